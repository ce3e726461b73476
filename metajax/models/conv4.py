"""The four-block convolutional net of MAML, Matching and Prototypical Nets."""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from metajax import checks
from metajax.models import layers

Array = Any

POOLINGS = ("stride", "max")
READOUTS = ("mean", "flatten")


class Conv4(nn.Module):
  """Four blocks of [3x3 conv, batch norm, ReLU, downsample], then a head.

  `pooling="stride"` is the MAML Omniglot net: each conv has stride 2 and
  SAME padding (28x28 -> 14 -> 7 -> 4 -> 2). `pooling="max"` is the
  miniImageNet net: stride-1 SAME convs each followed by 2x2 VALID max-pool
  (84x84 -> 42 -> 21 -> 10 -> 5).

  The readout follows the MAML reference by default: with "stride" it
  averages the last feature map over space (64 features), with "max" it
  flattens it (5*5*64 = 1600 features for 84x84). Batch norm uses the current
  batch's statistics (`layers.BatchStatNorm`), so the model has only a
  'params' collection and is a pure function of (params, x).

  Params tree: conv0..conv3 {kernel [3,3,C_in,filters] (+ bias when
  norm=False)}, norm0..norm3 {scale, bias} (when norm=True), head {kernel,
  bias} (when num_outputs is not None). It is the same for both `conv_impl`.

  Example:
    Logits of a batch of images::

      model = Conv4(5)
      params = model.init(key, jnp.zeros((1, 28, 28, 1)))
      logits = model.apply(params, images)   # [B, 5]

  Attributes:
    num_outputs: size of the Dense head; None returns the features (an
      embedding for Prototypical or Matching Nets).
    filters: channels of every conv.
    pooling: "stride" or "max".
    conv_impl: "patches" (default): convs as patches + matmul and max-pool
      as reshape + max, fast under `jax.vmap` over tasks with per-task
      weights on CPU; or "xla": the stock lowering, `lax.conv_general_dilated`
      and `lax.reduce_window` (as `nn.Conv` and `nn.max_pool`). Same params,
      same numbers. (XLA:CPU in jax 0.10.2 miscompiles the mix of grouped
      convolution and reshape-max under jit(vmap) for second-order
      gradients, so "xla" keeps `reduce_window`.)
    compute_dtype: "float32" (default) or "bfloat16" (conv_impl="patches"
      only): the convs' matmuls take bfloat16 inputs with float32
      accumulation; params, activations, batch norm and head stay float32.
      See `layers.conv2d_patches` and docs/benchmark.md.
    norm: use batch-statistics batch norm after each conv. When True the convs
      have no bias (batch norm would cancel it).
    readout: "mean" over space or "flatten"; None picks the MAML reference's
      choice for `pooling` ("mean" for "stride", "flatten" for "max").
    epsilon: batch norm epsilon.
  """

  num_outputs: Optional[int]
  filters: int = 64
  pooling: str = "stride"
  conv_impl: str = "patches"
  compute_dtype: str = "float32"
  norm: bool = True
  readout: Optional[str] = None
  epsilon: float = 1e-5

  def __post_init__(self):
    checks.integer("num_outputs", self.num_outputs, minimum=1, optional=True)
    checks.integer("filters", self.filters, minimum=1)
    checks.one_of("pooling", self.pooling, POOLINGS)
    checks.one_of("conv_impl", self.conv_impl, layers.CONV_IMPLS)
    checks.one_of("compute_dtype", self.compute_dtype, layers.COMPUTE_DTYPES)
    if self.compute_dtype != "float32" and self.conv_impl != "patches":
      raise ValueError("compute_dtype='bfloat16' needs conv_impl='patches'.")
    checks.boolean("norm", self.norm)
    if self.readout is not None:
      checks.one_of("readout", self.readout, READOUTS)
    checks.positive("epsilon", self.epsilon)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, stats_rows: Optional[int] = None) -> Array:
    """Applies the net.

    Args:
      x: [B, H, W, C] float32 images, already scaled (e.g. to [0, 1]).
      stats_rows: batch norm takes its statistics from the first
        `stats_rows` images only (e.g. a support set before its queries);
        None: from all B.

    Returns:
      [B, num_outputs] outputs, or [B, features] when `num_outputs` is None.
    """
    if self.pooling not in POOLINGS:
      raise ValueError(
        f"pooling must be one of {POOLINGS}, got {self.pooling!r}"
      )
    readout = self.readout
    if readout is None:
      readout = "mean" if self.pooling == "stride" else "flatten"
    if readout not in READOUTS:
      raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    image_hw = x.shape[-3:-1]
    strides = (2, 2) if self.pooling == "stride" else (1, 1)
    pool_impl = "reshape" if self.conv_impl == "patches" else "reduce_window"
    for i in range(4):
      x = layers.Conv(
        self.filters,
        (3, 3),
        strides=strides,
        padding="SAME",
        use_bias=not self.norm,
        impl=self.conv_impl,
        compute_dtype=self.compute_dtype,
        name=f"conv{i}",
      )(x)
      if self.norm:
        x = layers.BatchStatNorm(epsilon=self.epsilon, name=f"norm{i}")(
          x, stats_rows
        )
      x = nn.relu(x)
      if self.pooling == "max":
        x = layers.max_pool(x, 2, impl=pool_impl)
    if 0 in x.shape[-3:-1]:
      raise ValueError(
        f"Images of {image_hw[0]}x{image_hw[1]} are too small for four "
        f"{self.pooling!r} downsamplings (at least 16x16 for 'max')."
      )
    if readout == "mean":
      x = jnp.mean(x, axis=(-3, -2))
    else:
      x = x.reshape(x.shape[:-3] + (-1,))
    if self.num_outputs is None:
      return x
    return nn.Dense(self.num_outputs, name="head")(x)
