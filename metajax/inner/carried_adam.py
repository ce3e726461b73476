"""Adam without momentum whose statistics can carry over from task to task.

Reptile's code (Nichol et al. 2018) runs every task's inner steps through one
TensorFlow Adam with beta1 = 0 whose slots are never reset; only the weights
are. This is that optimizer, with its state in a form that can be carried:
the second moments `nu` and `debias` = 1 - b2^t, the bias correction after t
steps, kept as a running average of ones with decay b2 rather than as the
count t. A change of `debias` is small, so a carried state adds little to the
norm of Reptile's outer "gradient", which includes old - new state.
"""

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax


class CarriedAdamState(NamedTuple):
  """The state of `carried_adam`.

  Attributes:
    nu: like the params: the decayed average of squared gradients.
    debias: [] float32: `1 - b2^t` after t steps (0 when fresh).
  """

  nu: optax.Updates  # like the params: decayed average of squared gradients
  debias: chex.Array  # [] float32: 1 - b2^t after t steps (0 when fresh)


def carried_adam(
  learning_rate: float, b2: float = 0.999
) -> optax.GradientTransformation:
  """Adam with beta1 = 0, its bias correction kept as a carried average.

  From a fresh state (`init`) it is `optax.adam(learning_rate, b1=0, b2=b2)`
  up to rounding; from a carried state it continues that state's statistics:

      nu <- b2 nu + (1 - b2) g^2,  debias <- b2 debias + (1 - b2),
      update = -learning_rate g / (sqrt(nu / debias) + 1e-8).

  Args:
    learning_rate: the step size.
    b2: the decay of the second moments, in [0, 1).

  Returns:
    An `optax.GradientTransformation` with state `CarriedAdamState`.
  """

  def init_fn(params):
    return CarriedAdamState(
      nu=jax.tree.map(jnp.zeros_like, params), debias=jnp.zeros([], jnp.float32)
    )

  def update_fn(updates, state, params=None):
    del params
    nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
    debias = b2 * state.debias + (1 - b2)
    # optax.adam's eps = 1e-8, outside the root.
    updates = jax.tree.map(
      lambda g, v: -(learning_rate * g / (jnp.sqrt(v / debias) + 1e-8)),
      updates,
      nu,
    )
    return updates, CarriedAdamState(nu=nu, debias=debias)

  return optax.GradientTransformation(init_fn, update_fn)
