"""Layers for the few-shot models: a convolution with selectable lowering, a
max pool with selectable lowering, and a batch norm that is a pure function of
its input.

The convolution's lowerings ("patches": shifted-slice patches + matmul; "xla":
`jax.lax.conv_general_dilated`) and its bfloat16 compute dtype are pure
functions in `metajax.models.convolution`; `Conv` here is the flax module over
them, and this module re-exports them under their old names
(`layers.conv2d`, `layers.CONV_IMPLS`, ...).
"""

from typing import Any, Callable, Optional, Tuple, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

# Re-exported (the `as` form marks them public): the convolution's functions
# and constants, as `layers.<name>`.
from metajax.models.convolution import COMPUTE_DTYPES as COMPUTE_DTYPES
from metajax.models.convolution import CONV_IMPLS as CONV_IMPLS
from metajax.models.convolution import Padding as Padding
from metajax.models.convolution import (
  check_compute_dtype as check_compute_dtype,
)
from metajax.models.convolution import conv2d as conv2d
from metajax.models.convolution import conv2d_patches as conv2d_patches
from metajax.models.convolution import conv2d_xla as conv2d_xla
from metajax.models.convolution import extract_patches as extract_patches

Array = Any

POOL_IMPLS = ("reshape", "reduce_window")


def max_pool(x: Array, window: int = 2, impl: str = "reshape") -> Array:
  """Non-overlapping `window` x `window` max pooling, VALID padding.

  Both lowerings give `flax.linen.max_pool(x, (w, w), (w, w), "VALID")`:

  - `"reshape"`: crop, reshape to [..., H/w, w, W/w, w, C] and reduce with
    max. Its first and second derivatives are elementwise ops, which XLA:CPU
    runs faster than those of "reduce_window" for second-order MAML under
    vmap.
  - `"reduce_window"`: `jax.lax.reduce_window` (what `nn.max_pool` does).

  Args:
    x: [..., H, W, C] input.
    window: pool size and stride.
    impl: "reshape" or "reduce_window".

  Returns:
    [..., H // window, W // window, C].
  """
  h, w, c = x.shape[-3:]
  ho, wo = h // window, w // window
  if impl == "reduce_window":
    ones = (1,) * (x.ndim - 3)
    return jax.lax.reduce_window(
      x,
      -jnp.inf,
      jax.lax.max,
      ones + (window, window, 1),
      ones + (window, window, 1),
      "VALID",
    )
  if impl != "reshape":
    raise ValueError(f"pool impl must be one of {POOL_IMPLS}, got {impl!r}")
  x = x[..., : ho * window, : wo * window, :]
  x = x.reshape(x.shape[:-3] + (ho, window, wo, window, c))
  return jnp.max(x, axis=(-4, -2))


class Conv(nn.Module):
  """A 2-D convolution whose lowering is selectable; `nn.Conv`'s params.

  The parameters are `kernel` [kh, kw, C_in, C_out] and (if `use_bias`)
  `bias` [C_out], as in `flax.linen.Conv`, whatever `impl` is; so a params
  tree is interchangeable between lowerings.

  Attributes:
    features: C_out.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: "SAME", "VALID" or explicit pairs.
    use_bias: whether to add a bias.
    impl: "patches" or "xla" (see `metajax.models.convolution`).
    compute_dtype: "float32" or (impl="patches") "bfloat16": the matmul's
      inputs in bfloat16, float32 accumulation, params and output float32.
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
  """

  features: int
  kernel_size: Tuple[int, int] = (3, 3)
  strides: Tuple[int, int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  impl: str = "patches"
  compute_dtype: str = "float32"
  kernel_init: Callable[..., Array] = nn.initializers.glorot_uniform()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Applies the convolution.

    Args:
      x: [..., H, W, C_in] float input.

    Returns:
      [..., H_out, W_out, features].
    """
    kernel = self.param(
      "kernel",
      self.kernel_init,
      tuple(self.kernel_size) + (x.shape[-1], self.features),
    )
    # `init` runs the XLA lowering whatever `impl` is: the same params and
    # (to float tolerance) the same output, with one op instead of a dozen to
    # compile, so an un-jitted Conv4 `init` compiles less; under jit it makes
    # no difference.
    check_compute_dtype(self.compute_dtype)
    if self.impl == "xla" and self.compute_dtype != "float32":
      raise ValueError(
        f"compute_dtype={self.compute_dtype!r} needs "
        "impl='patches'; impl='xla' computes in float32"
      )
    initializing = self.is_initializing() and self.impl in CONV_IMPLS
    # tuple(): a config may give a list; the field is declared (sh, sw).
    strides = cast(Tuple[int, int], tuple(self.strides))
    y = conv2d(
      x,
      kernel,
      strides,
      self.padding,
      "xla" if initializing else self.impl,
      "float32" if initializing else self.compute_dtype,
    )
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y


def batch_stat_norm(
  x: Array,
  scale: Array = None,
  bias: Array = None,
  epsilon: float = 1e-5,
  stats_rows: Optional[int] = None,
) -> Array:
  """Normalizes with the statistics of this batch; a pure function.

  Mean and (biased) variance are taken over every axis but the last, so for
  [B, H, W, C] each channel is normalized over batch and space.

  Args:
    x: [..., C] input.
    scale: optional [C] multiplier applied after normalizing.
    bias: optional [C] offset applied after scaling.
    epsilon: added to the variance.
    stats_rows: take the statistics of the first `stats_rows` rows only
      (e.g. a support set put before its queries) and apply them to every
      row, so each later row's output depends on those rows and itself
      alone; None: all rows.

  Returns:
    Array shaped like `x`.
  """
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x if stats_rows is None else x[:stats_rows], axis=axes)
  centered = x - mean
  var = jnp.mean(
    jnp.square(centered if stats_rows is None else centered[:stats_rows]),
    axis=axes,
  )
  y = centered * jax.lax.rsqrt(var + epsilon)
  if scale is not None:
    y = y * scale
  if bias is not None:
    y = y + bias
  return y


class BatchStatNorm(nn.Module):
  """Batch norm on the current batch's statistics, with learned scale and bias.

  No running averages and no mutable collections (as in MAML): the output
  depends only on the input and the `scale`/`bias` params, so the module is
  safe under `jax.vmap`, `jax.grad` and inner loops.

  Attributes:
    epsilon: added to the variance.
    use_scale: learn a per-channel `scale` (init 1).
    use_bias: learn a per-channel `bias` (init 0).
  """

  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: Array, stats_rows: Optional[int] = None) -> Array:
    """Normalizes `x` over all axes but the last.

    Args:
      x: [..., C] input; for images [B, H, W, C].
      stats_rows: statistics of the first rows only (`batch_stat_norm`).

    Returns:
      Array shaped like `x`.
    """
    c = x.shape[-1]
    scale = (
      self.param("scale", nn.initializers.ones_init(), (c,))
      if self.use_scale
      else None
    )
    bias = (
      self.param("bias", nn.initializers.zeros_init(), (c,))
      if self.use_bias
      else None
    )
    return batch_stat_norm(x, scale, bias, self.epsilon, stats_rows)


def drop_block(x: Array, key: Array, rate: float, block_size: int) -> Array:
  """DropBlock (Ghiasi et al. 2018): zeroes random square blocks of a map.

  Seeds are drawn Bernoulli(gamma) at each position of [..., H - b + 1,
  W - b + 1, C] where a b x b block fits (b = min(block_size, H, W)); each
  seed zeroes the b x b block below and right of it, channel by channel;
  then the kept values are scaled by (number of values) / (number kept), so
  the mean is kept in expectation. gamma = rate / b^2 * H W / ((H - b + 1)
  (W - b + 1)) makes the dropped fraction about `rate` (as in the paper and
  RFS / MetaOptNet's ResNet-12). `block_size=1` is dropout, normalized by
  the count kept instead of 1 / (1 - rate).

  Args:
    x: [..., H, W, C] feature maps.
    key: PRNG key of the seeds.
    rate: target fraction dropped, in [0, 1).
    block_size: side of the dropped squares (clipped to H and W).

  Returns:
    Array shaped like `x`.
  """
  h, w = x.shape[-3:-1]
  b = max(1, min(block_size, h, w))
  gamma = rate / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
  seed_shape = x.shape[:-3] + (h - b + 1, w - b + 1, x.shape[-1])
  seeds = jax.random.bernoulli(key, min(gamma, 1.0), seed_shape)
  seeds = seeds.astype(x.dtype)
  if b > 1:
    # Position (i, j) is dropped if a seed lies in [i - b + 1, i] x
    # [j - b + 1, j]: a b x b max over the seeds padded by b - 1 each side.
    lead = [(0, 0)] * (x.ndim - 3)
    seeds = jnp.pad(seeds, lead + [(b - 1, b - 1), (b - 1, b - 1), (0, 0)])
    ones = (1,) * (x.ndim - 3)
    seeds = jax.lax.reduce_window(
      seeds, 0.0, jax.lax.max, ones + (b, b, 1), ones + (1, 1, 1), "VALID"
    )
  keep = 1.0 - seeds
  kept = jnp.maximum(jnp.sum(keep), 1.0)
  return x * keep * (keep.size / kept)
