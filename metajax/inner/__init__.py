"""Inner-loop optimizers as optax transformations whose hyperparameters can be
meta-parameters (so the outer gradient reaches them)."""

from metajax.inner.learned_sgd import LearnedSgdState
from metajax.inner.learned_sgd import learned_sgd

__all__ = ("LearnedSgdState", "learned_sgd")
