"""Learner factories: each returns a `metajax.types.Learner`."""

from metajax.learners.maml import anil
from metajax.learners.maml import head_only
from metajax.learners.maml import maml
from metajax.learners.maml import meta_sgd
from metajax.learners.reptile import reptile

__all__ = ("anil", "head_only", "maml", "meta_sgd", "reptile")
