"""The one host-to-model conversion: uint8 images to float32 in [0, 1]."""

import jax.numpy as jnp


def to_float(x):
  """uint8 (or any integer) images -> float32 / 255; floats pass unchanged.

  Runs inside the jitted step, so images cross to the device as uint8.
  """
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)
