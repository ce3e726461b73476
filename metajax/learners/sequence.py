"""Sequence helpers of the black-box learners (MANN, SNAIL): the support set
as the start of an input sequence, and causal masks."""

import jax
import jax.numpy as jnp

__all__ = ("causal_mask", "support_sequence")


def causal_mask(length: int) -> jax.Array:
  """[T, T] bool, True where step t may attend to step s (s <= t)."""
  return jnp.tril(jnp.ones((length, length), bool))


def support_sequence(support, key: jax.Array, ways: int, *, label_shift: int):
  """The support set as the start of a black-box learner's input sequence.

  The examples are put in a random order (a permutation drawn from `key`, so
  the same episode and key give the same sequence) and their labels are
  one-hot encoded and delayed by `label_shift` steps: 0 pairs x_t with its own
  label y_t (SNAIL), 1 with the previous step's label y_{t-1} (MANN; step 0
  gets a zero vector). The queries that follow the support carry no label of
  their own (see the learners).

  Args:
    support: (support_x [n, ...], support_y [n] int labels in 0..ways-1).
    key: a `jax.random` key for the order.
    ways: the number of classes (the one-hot size).
    label_shift: 0 or 1.

  Returns:
    (x [n, ...] in sequence order, label inputs [n, ways] float32, labels [n]
    int in sequence order).
  """
  if label_shift not in (0, 1):
    raise ValueError(f"label_shift must be 0 or 1, got {label_shift!r}.")
  support_x, support_y = support
  order = jax.random.permutation(key, support_y.shape[0])
  x, y = support_x[order], support_y[order]
  onehot = jax.nn.one_hot(y, ways, dtype=jnp.float32)
  if label_shift:
    onehot = jnp.concatenate([jnp.zeros_like(onehot[:1]), onehot[:-1]], axis=0)
  return x, onehot, y
