"""Learner factories: each returns a `metajax.types.Learner`."""

from metajax.learners.maml import maml

__all__ = ("maml",)
