"""2-D convolution as pure functions, with a selectable lowering.

`metajax.models.layers.Conv` is the flax module over these functions (and
`layers` re-exports them, so `layers.conv2d` and the rest keep working).

Two lowerings of the same 2-D convolution (same parameters, same numbers):

- `"patches"`: gather the kh*kw shifted (strided) views of the padded input,
  concatenate them on the channel axis and multiply by the kernel reshaped to
  [kh*kw*C_in, C_out]. Under `jax.vmap` over tasks with per-task weights this
  stays a batched matmul, which XLA:CPU runs fast. With one input channel
  (a first layer on grey images) the views are stacked as rows instead,
  [kh*kw, positions], so that the kernel gradient is a plain matmul; XLA:CPU
  otherwise transposes the whole output gradient for it (measured in
  docs/benchmark.md).
- `"xla"`: `jax.lax.conv_general_dilated` (the `flax.linen.Conv` lowering).
  Under `jax.vmap` with per-task weights it becomes a grouped convolution,
  which XLA:CPU runs tens of times slower; fine on accelerators.

`experiments/benchmark.py` measures the two; tests keep them equal.

`compute_dtype="bfloat16"` (patches only) multiplies in bfloat16 with float32
accumulation and float32 results (`_matmul_bf16`); activations, parameters
and the kernel gradient stay float32. On a CPU with AVX512-BF16 it makes
second-order MAML's step faster at bfloat16 precision (docs/benchmark.md);
the default is "float32".
"""

from typing import Any, Sequence, Tuple, Union

import jax
import jax.numpy as jnp

Array = Any
Padding = Union[str, Sequence[Tuple[int, int]]]

CONV_IMPLS = ("patches", "xla")
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(compute_dtype: str) -> str:
  """Returns `compute_dtype` if it is one of COMPUTE_DTYPES, else raises."""
  if compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(
      f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}"
    )
  return compute_dtype


@jax.custom_vjp
def _matmul_bf16(a: Array, b: Array) -> Array:
  """`a @ b` ([..., K] @ [K, N]) on bfloat16 inputs, float32 accumulation.

  The inputs are float32 and rounded to bfloat16 for the product; the result
  is float32. The input gradient `g @ b.T` is computed the same way (and so
  are its own derivatives, for second-order MAML). The kernel gradient
  `a.T @ g` stays a float32 matmul: XLA:CPU 0.10.2 runs a bfloat16 x bfloat16
  -> float32 dot only through its YNNPACK fusion, which does not take that
  layout (its fallback fails with "Unsupported element type for
  DotThunk::Execute: BF16 x BF16 = F32").
  """
  return jnp.dot(
    a.astype(jnp.bfloat16),
    b.astype(jnp.bfloat16),
    preferred_element_type=jnp.float32,
  )


def _matmul_bf16_fwd(a, b):
  return _matmul_bf16(a, b), (a, b)


def _matmul_bf16_bwd(residuals, g):
  a, b = residuals
  da = _matmul_bf16(g, b.T)
  db = jnp.dot(a.reshape(-1, a.shape[-1]).T, g.reshape(-1, g.shape[-1]))
  return da.astype(a.dtype), db.astype(b.dtype)


_matmul_bf16.defvjp(_matmul_bf16_fwd, _matmul_bf16_bwd)


def _explicit_padding(
  spatial_shape: Sequence[int],
  window: Sequence[int],
  strides: Sequence[int],
  padding: Padding,
) -> Tuple[Tuple[int, int], ...]:
  """Turns "SAME"/"VALID" (or explicit pairs) into (low, high) pairs."""
  if isinstance(padding, str):
    return tuple(
      jax.lax.padtype_to_pads(
        tuple(spatial_shape), tuple(window), tuple(strides), padding
      )
    )
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def extract_patches(
  x: Array,
  window: Tuple[int, int],
  strides: Tuple[int, int] = (1, 1),
  padding: Padding = "SAME",
  concatenate: bool = True,
) -> Array:
  """Shifted-slice patches of an NHWC array.

  Args:
    x: [..., H, W, C] input (any number of leading batch axes).
    window: (kh, kw) patch size.
    strides: (sh, sw).
    padding: "SAME", "VALID" or ((top, bottom), (left, right)), as in
      `jax.lax.conv_general_dilated`.
    concatenate: False returns the kh*kw views as a list instead.

  Returns:
    [..., H_out, W_out, kh*kw*C] with features ordered (kh, kw, C), i.e. the
    row order of an HWIO kernel reshaped to [kh*kw*C, C_out]; or (with
    concatenate=False) the list of the kh*kw [..., H_out, W_out, C] views in
    that order.
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
    x[
      ...,
      i : i + (h_out - 1) * sh + 1 : sh,
      j : j + (w_out - 1) * sw + 1 : sw,
      :,
    ]
    for i in range(kh)
    for j in range(kw)
  ]
  if not concatenate:
    return views
  return jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]


def _conv2d_one_channel(
  x: Array, kernel: Array, strides: Tuple[int, int], padding: Padding
) -> Array:
  """`conv2d_patches` for C_in = 1 with the patches as rows [..., kh*kw, M].

  M is the positions of the last batch axis and space together (all of them
  when x has no batch axis); the kernel gradient is then [kh*kw, M] @ [M,
  C_out], which XLA:CPU runs without transposing the output gradient.
  """
  kh, kw, _, c_out = kernel.shape
  views = extract_patches(x, (kh, kw), strides, padding, concatenate=False)
  spatial = views[0].shape[:-1]  # [..., (B,) H_out, W_out]
  lead = spatial[:-3] if len(spatial) >= 3 else ()
  rows = jnp.stack([v[..., 0].reshape(lead + (-1,)) for v in views], axis=-2)
  y = jax.lax.dot_general(
    rows, kernel.reshape(kh * kw, c_out), (((rows.ndim - 2,), (0,)), ((), ()))
  )
  return y.reshape(spatial + (c_out,))


def conv2d_patches(
  x: Array,
  kernel: Array,
  strides: Tuple[int, int] = (1, 1),
  padding: Padding = "SAME",
  compute_dtype: str = "float32",
) -> Array:
  """2-D convolution (cross-correlation) as shifted-slice patches + matmul.

  Args:
    x: [..., H, W, C_in] input.
    kernel: [kh, kw, C_in, C_out] (HWIO) kernel.
    strides: (sh, sw).
    padding: "SAME", "VALID" or explicit ((top, bottom), (left, right)).
    compute_dtype: "float32", or "bfloat16": the matmul's inputs rounded to
      bfloat16, float32 accumulation and result (see `_matmul_bf16`). With
      C_in = 1 the (small) matmul stays float32 either way.

  Returns:
    [..., H_out, W_out, C_out], equal to `conv2d_xla(x, kernel, ...)` (to
    bfloat16 precision with compute_dtype="bfloat16").
  """
  check_compute_dtype(compute_dtype)
  kh, kw, c_in, c_out = kernel.shape
  if c_in == 1:
    return _conv2d_one_channel(x, kernel, strides, padding)
  patches = extract_patches(x, (kh, kw), strides, padding)
  kernel = kernel.reshape(kh * kw * c_in, c_out)
  if compute_dtype == "bfloat16":
    return _matmul_bf16(patches, kernel)
  return jnp.dot(patches, kernel)


def conv2d_xla(
  x: Array,
  kernel: Array,
  strides: Tuple[int, int] = (1, 1),
  padding: Padding = "SAME",
) -> Array:
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
    x4,
    kernel,
    window_strides=tuple(strides),
    padding=pads,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  return y.reshape(lead + y.shape[1:])


def conv2d(
  x: Array,
  kernel: Array,
  strides: Tuple[int, int] = (1, 1),
  padding: Padding = "SAME",
  impl: str = "patches",
  compute_dtype: str = "float32",
) -> Array:
  """2-D convolution with the lowering named by `impl` ("patches" or "xla").

  Args:
    x: [..., H, W, C_in] input.
    kernel: [kh, kw, C_in, C_out] kernel.
    strides: (sh, sw).
    padding: "SAME", "VALID" or explicit ((top, bottom), (left, right)).
    impl: "patches" (default, fast under per-task vmap on CPU) or "xla".
    compute_dtype: "float32" or (impl="patches" only) "bfloat16"; see
      `conv2d_patches`.

  Returns:
    [..., H_out, W_out, C_out].
  """
  check_compute_dtype(compute_dtype)
  if impl == "patches":
    return conv2d_patches(x, kernel, strides, padding, compute_dtype)
  if impl == "xla":
    if compute_dtype != "float32":
      raise ValueError(
        f"compute_dtype={compute_dtype!r} needs "
        "impl='patches'; impl='xla' computes in float32"
      )
    return conv2d_xla(x, kernel, strides, padding)
  raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}")
