"""Layers for the few-shot models: a convolution with selectable lowering, and
a batch norm that is a pure function of its input.

Two lowerings of the same 2-D convolution (same parameters, same numbers):

- `"patches"`: gather the kh*kw shifted (strided) views of the padded input,
  concatenate them on the channel axis and multiply by the kernel reshaped to
  [kh*kw*C_in, C_out]. Under `jax.vmap` over tasks with per-task weights this
  stays a batched matmul, which XLA:CPU runs fast.
- `"xla"`: `jax.lax.conv_general_dilated` (the `flax.linen.Conv` lowering).
  Under `jax.vmap` with per-task weights it becomes a grouped convolution,
  which XLA:CPU runs tens of times slower; fine on accelerators.

`experiments/benchmark.py` measures the two; tests keep them equal.
"""

from typing import Any, Callable, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any
Padding = Union[str, Sequence[Tuple[int, int]]]

CONV_IMPLS = ("patches", "xla")


def _explicit_padding(spatial_shape: Sequence[int],
                      window: Sequence[int],
                      strides: Sequence[int],
                      padding: Padding) -> Tuple[Tuple[int, int], ...]:
  """Turns "SAME"/"VALID" (or explicit pairs) into (low, high) pairs."""
  if isinstance(padding, str):
    return tuple(jax.lax.padtype_to_pads(
        tuple(spatial_shape), tuple(window), tuple(strides), padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def extract_patches(x: Array,
                    window: Tuple[int, int],
                    strides: Tuple[int, int] = (1, 1),
                    padding: Padding = "SAME") -> Array:
  """Shifted-slice patches of an NHWC array.

  Args:
    x: [..., H, W, C] input (any number of leading batch axes).
    window: (kh, kw) patch size.
    strides: (sh, sw).
    padding: "SAME", "VALID" or ((top, bottom), (left, right)), as in
      `jax.lax.conv_general_dilated`.

  Returns:
    [..., H_out, W_out, kh*kw*C] with features ordered (kh, kw, C), i.e. the
    row order of an HWIO kernel reshaped to [kh*kw*C, C_out].
  """
  kh, kw = window
  sh, sw = strides
  pads = _explicit_padding(x.shape[-3:-1], window, strides, padding)
  if any(lo or hi for lo, hi in pads):
    lead = [(0, 0)] * (x.ndim - 3)
    x = jnp.pad(x, lead + list(pads) + [(0, 0)])
  h, w = x.shape[-3], x.shape[-2]
  h_out = (h - kh) // sh + 1
  w_out = (w - kw) // sw + 1
  views = [
      x[..., i:i + (h_out - 1) * sh + 1:sh, j:j + (w_out - 1) * sw + 1:sw, :]
      for i in range(kh) for j in range(kw)
  ]
  return jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]


def conv2d_patches(x: Array,
                   kernel: Array,
                   strides: Tuple[int, int] = (1, 1),
                   padding: Padding = "SAME") -> Array:
  """2-D convolution (cross-correlation) as shifted-slice patches + matmul.

  Args:
    x: [..., H, W, C_in] input.
    kernel: [kh, kw, C_in, C_out] (HWIO) kernel.
    strides: (sh, sw).
    padding: "SAME", "VALID" or explicit ((top, bottom), (left, right)).

  Returns:
    [..., H_out, W_out, C_out], equal to `conv2d_xla(x, kernel, ...)`.
  """
  kh, kw, c_in, c_out = kernel.shape
  patches = extract_patches(x, (kh, kw), strides, padding)
  return jnp.dot(patches, kernel.reshape(kh * kw * c_in, c_out))


def conv2d_xla(x: Array,
               kernel: Array,
               strides: Tuple[int, int] = (1, 1),
               padding: Padding = "SAME") -> Array:
  """2-D convolution with `jax.lax.conv_general_dilated` (NHWC, HWIO).

  Args:
    x: [..., H, W, C_in] input (leading axes are flattened into one batch).
    kernel: [kh, kw, C_in, C_out] kernel.
    strides: (sh, sw).
    padding: "SAME", "VALID" or explicit ((top, bottom), (left, right)).

  Returns:
    [..., H_out, W_out, C_out].
  """
  lead = x.shape[:-3]
  x4 = x.reshape((-1,) + x.shape[-3:])
  pads = _explicit_padding(x.shape[-3:-1], kernel.shape[:2], strides, padding)
  y = jax.lax.conv_general_dilated(
      x4, kernel, window_strides=tuple(strides), padding=pads,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return y.reshape(lead + y.shape[1:])


def conv2d(x: Array,
           kernel: Array,
           strides: Tuple[int, int] = (1, 1),
           padding: Padding = "SAME",
           impl: str = "patches") -> Array:
  """2-D convolution with the lowering named by `impl` ("patches" or "xla").

  Args:
    x: [..., H, W, C_in] input.
    kernel: [kh, kw, C_in, C_out] kernel.
    strides: (sh, sw).
    padding: "SAME", "VALID" or explicit ((top, bottom), (left, right)).
    impl: "patches" (default, fast under per-task vmap on CPU) or "xla".

  Returns:
    [..., H_out, W_out, C_out].
  """
  if impl == "patches":
    return conv2d_patches(x, kernel, strides, padding)
  if impl == "xla":
    return conv2d_xla(x, kernel, strides, padding)
  raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}")


POOL_IMPLS = ("reshape", "reduce_window")


def max_pool(x: Array, window: int = 2, impl: str = "reshape") -> Array:
  """Non-overlapping `window` x `window` max pooling, VALID padding.

  Both lowerings give `flax.linen.max_pool(x, (w, w), (w, w), "VALID")`:

  - `"reshape"`: crop, reshape to [..., H/w, w, W/w, w, C] and reduce with
    max. Its first and second derivatives are elementwise ops; measured about
    30% faster than "reduce_window" for second-order MAML under vmap on CPU.
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
        x, -jnp.inf, jax.lax.max, ones + (window, window, 1),
        ones + (window, window, 1), "VALID")
  if impl != "reshape":
    raise ValueError(f"pool impl must be one of {POOL_IMPLS}, got {impl!r}")
  x = x[..., :ho * window, :wo * window, :]
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
    impl: "patches" or "xla" (see module docstring).
    kernel_init: initializer of the kernel.
    bias_init: initializer of the bias.
  """
  features: int
  kernel_size: Tuple[int, int] = (3, 3)
  strides: Tuple[int, int] = (1, 1)
  padding: Padding = "SAME"
  use_bias: bool = True
  impl: str = "patches"
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
    kernel = self.param("kernel", self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    # `init` runs the XLA lowering whatever `impl` is: the same params and
    # (to float tolerance) the same output, with one op instead of a dozen to
    # compile, so an un-jitted Conv4 `init` in a fresh process takes ~3 s
    # instead of ~6 s on CPU (measured); under jit it makes no difference.
    impl = "xla" if self.is_initializing() and self.impl in CONV_IMPLS else (
        self.impl)
    y = conv2d(x, kernel, tuple(self.strides), self.padding, impl)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    return y


def batch_stat_norm(x: Array,
                    scale: Array = None,
                    bias: Array = None,
                    epsilon: float = 1e-5) -> Array:
  """Normalizes with the statistics of this batch; a pure function.

  Mean and (biased) variance are taken over every axis but the last, so for
  [B, H, W, C] each channel is normalized over batch and space.

  Args:
    x: [..., C] input.
    scale: optional [C] multiplier applied after normalizing.
    bias: optional [C] offset applied after scaling.
    epsilon: added to the variance.

  Returns:
    Array shaped like `x`.
  """
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axis=axes)
  centered = x - mean
  var = jnp.mean(jnp.square(centered), axis=axes)
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
  def __call__(self, x: Array) -> Array:
    """Normalizes `x` over all axes but the last.

    Args:
      x: [..., C] input; for images [B, H, W, C].

    Returns:
      Array shaped like `x`.
    """
    c = x.shape[-1]
    scale = (self.param("scale", nn.initializers.ones_init(), (c,))
             if self.use_scale else None)
    bias = (self.param("bias", nn.initializers.zeros_init(), (c,))
            if self.use_bias else None)
    return batch_stat_norm(x, scale, bias, self.epsilon)
