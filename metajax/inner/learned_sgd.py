"""SGD whose step sizes are meta-parameters: Meta-SGD and MAML++'s LSLR."""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax


class LearnedSgdState(NamedTuple):
  """The state of `learned_sgd`.

  Attributes:
    count: [] int32, the inner steps taken.
  """

  count: chex.Array  # [] int32, inner steps taken


def learned_sgd(
  learning_rates: optax.Params, *, per_step: bool = False
) -> optax.GradientTransformation:
  """updates = -learning_rates * grads, with the rates as (meta-)parameters.

  Each leaf of `learning_rates` broadcasts against the matching gradient leaf:
  a leaf shaped like the parameter is Meta-SGD's per-coordinate step (Li et
  al. 2017); a scalar leaf is a per-layer step. With `per_step=True` each leaf
  has a leading [inner_steps] axis and step t uses row t, which is MAML++'s
  per-layer per-step learning rates (LSLR, Antoniou et al. 2019).

  The rates are ordinary arrays, so the outer gradient flows into them when
  they are part of the meta-parameters.

  Args:
    learning_rates: a pytree with the structure of the parameters.
    per_step: whether leaves have a leading inner-step axis.

  Returns:
    An `optax.GradientTransformation`.
  """

  def init_fn(params):
    del params
    return LearnedSgdState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    rates = learning_rates
    if per_step:
      rates = jax.tree.map(lambda r: jnp.asarray(r)[state.count], rates)
    updates = jax.tree.map(lambda g, r: -r * g, updates, rates)
    return updates, LearnedSgdState(count=state.count + 1)

  return optax.GradientTransformation(init_fn, update_fn)
