"""ResNet-12, the backbone of MetaOptNet, RFS and most miniImageNet work."""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from metajax import checks
from metajax.models import layers

Array = Any

READOUTS = ("flatten", "mean")
# He-normal over the fan-out, as RFS and MetaOptNet initialize their convs
# (PyTorch's kaiming_normal_(mode="fan_out", nonlinearity="leaky_relu")).
KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ResidualBlock(nn.Module):
  """One ResNet-12 block: three 3x3 convs, a 1x1 shortcut, a 2x2 max-pool.

  conv0-norm0-LeakyReLU, conv1-norm1-LeakyReLU, conv2-norm2, plus the
  shortcut (1x1 conv, norm) of the block's input; LeakyReLU of the sum, then
  2x2 max-pool (VALID: 21 -> 10) and, when `drop_rate` > 0 and training,
  `layers.drop_block`. Params: conv0..conv2 and shortcut {kernel (+ bias
  when norm=False)}, norm0..norm2 and shortcut_norm {scale, bias} (when
  norm=True).

  Attributes:
    features: channels of every conv of the block.
    conv_impl: "patches" or "xla" (as `Conv4.conv_impl`).
    compute_dtype: "float32" or "bfloat16" (as `Conv4.compute_dtype`).
    norm: batch-statistics batch norm after each conv.
    negative_slope: the LeakyReLU's slope below zero.
    drop_rate: the DropBlock rate; 0 turns it off.
    block_size: the DropBlock square's side (1: dropout).
    epsilon: batch norm epsilon.
  """

  features: int
  conv_impl: str = "patches"
  compute_dtype: str = "float32"
  norm: bool = True
  negative_slope: float = 0.1
  drop_rate: float = 0.0
  block_size: int = 5
  epsilon: float = 1e-5

  @nn.compact
  def __call__(
    self, x: Array, stats_rows: Optional[int] = None, train: bool = False
  ) -> Array:
    """Applies the block.

    Args:
      x: [B, H, W, C_in] input.
      stats_rows: batch norm statistics of the first rows only (as Conv4's).
      train: apply DropBlock (needs a 'dropout' rng when drop_rate > 0).

    Returns:
      [B, H // 2, W // 2, features].
    """

    def conv_norm(y, kernel, name, norm_name):
      y = layers.Conv(
        self.features,
        (kernel, kernel),
        padding="SAME",
        use_bias=not self.norm,
        impl=self.conv_impl,
        compute_dtype=self.compute_dtype,
        kernel_init=KERNEL_INIT,
        name=name,
      )(y)
      if self.norm:
        y = layers.BatchStatNorm(epsilon=self.epsilon, name=norm_name)(
          y, stats_rows
        )
      return y

    act = lambda y: nn.leaky_relu(y, negative_slope=self.negative_slope)
    out = x
    for i in range(3):
      out = conv_norm(out, 3, f"conv{i}", f"norm{i}")
      if i < 2:
        out = act(out)
    out = act(out + conv_norm(x, 1, "shortcut", "shortcut_norm"))
    # reduce_window for both conv lowerings: XLA:CPU (jax 0.10.2) miscompiles
    # the second-order gradient of this block under jit with the "reshape"
    # pool (and with a max of strided slices); its algebraic simplifier, as
    # --xla_disable_hlo_passes=algsimp shows. tests/test_resnet12.py.
    out = layers.max_pool(out, 2, impl="reduce_window")
    if train and self.drop_rate > 0:
      key = self.make_rng("dropout")
      out = layers.drop_block(out, key, self.drop_rate, self.block_size)
    return out


class ResNet12(nn.Module):
  """ResNet-12: four residual blocks (64-160-320-640 channels), then a head.

  Each block (`ResidualBlock`) is three 3x3 convs with batch norm and
  LeakyReLU(0.1), a 1x1 conv + batch norm shortcut added before the last
  LeakyReLU, and a 2x2 max-pool: 84x84 -> 42 -> 21 -> 10 -> 5, so the
  flattened features of an 84x84 image are 5*5*640 = 16000 (MetaOptNet's
  readout; `readout="mean"` averages over space instead, 640 features, as
  RFS). Batch norm uses the current batch's statistics
  (`layers.BatchStatNorm`, as Conv4), so the model has only a 'params'
  collection and the learners' batch-norm conventions (per-task
  statistics, `stats_rows`) hold for it too.

  DropBlock (off by default): with `drop_rate` > 0 and `train=True` (and a
  'dropout' rng: `apply(..., rngs={"dropout": key})`), the last two blocks
  drop `block_size` squares and the earlier ones single units, as RFS and
  MetaOptNet do; at a constant rate (their linear ramp of the keep rate is
  left out). The learners call the model without `train`, so they train
  without it.

  Params tree: block0..block{n-1} (see `ResidualBlock`), head {kernel,
  bias} (when num_outputs is not None); the same for both `conv_impl`.

  Example:
    A 16000-feature embedding of 84x84 colour images::

      net = ResNet12(None)
      params = net.init(key, jnp.zeros((1, 84, 84, 3)))
      features = net.apply(params, images)   # [B, 16000]

  Attributes:
    num_outputs: size of the Dense head; None returns the features.
    channels: the channels of each block (their number is the number of
      blocks and 2x2 pools).
    conv_impl: "patches" (default: fastest under `jax.vmap` over tasks with
      per-task weights on CPU, docs/benchmark.md) or "xla", as in `Conv4`.
    compute_dtype: "float32" or (conv_impl="patches") "bfloat16" matmul
      inputs, as in `Conv4`.
    norm: batch-statistics batch norm after each conv; when True the convs
      have no bias.
    readout: "flatten" (default) or "mean" over space.
    negative_slope: the LeakyReLU's slope below zero.
    drop_rate: DropBlock's rate (0: off).
    block_size: DropBlock's square side in the last two blocks.
    epsilon: batch norm epsilon.
  """

  num_outputs: Optional[int]
  channels: Sequence[int] = (64, 160, 320, 640)
  conv_impl: str = "patches"
  compute_dtype: str = "float32"
  norm: bool = True
  readout: str = "flatten"
  negative_slope: float = 0.1
  drop_rate: float = 0.0
  block_size: int = 5
  epsilon: float = 1e-5

  def __post_init__(self):
    checks.integer("num_outputs", self.num_outputs, minimum=1, optional=True)
    if not isinstance(self.channels, (tuple, list)) or not self.channels:
      raise ValueError(
        f"channels must be a non-empty sequence of widths, got "
        f"{self.channels!r}."
      )
    for width in self.channels:
      checks.integer("each width of channels", width, minimum=1)
    checks.one_of("conv_impl", self.conv_impl, layers.CONV_IMPLS)
    checks.one_of("compute_dtype", self.compute_dtype, layers.COMPUTE_DTYPES)
    if self.compute_dtype != "float32" and self.conv_impl != "patches":
      raise ValueError("compute_dtype='bfloat16' needs conv_impl='patches'.")
    checks.boolean("norm", self.norm)
    checks.one_of("readout", self.readout, READOUTS)
    checks.number("negative_slope", self.negative_slope, low=0.0)
    checks.number("drop_rate", self.drop_rate, low=0.0, high=0.99)
    checks.integer("block_size", self.block_size, minimum=1)
    checks.positive("epsilon", self.epsilon)
    super().__post_init__()

  @nn.compact
  def __call__(
    self, x: Array, stats_rows: Optional[int] = None, train: bool = False
  ) -> Array:
    """Applies the net.

    Args:
      x: [B, H, W, C] float32 images, already scaled (e.g. to [0, 1]).
      stats_rows: batch norm takes its statistics from the first
        `stats_rows` images only (e.g. a support set before its queries);
        None: from all B.
      train: apply DropBlock (when drop_rate > 0; needs a 'dropout' rng).

    Returns:
      [B, num_outputs] outputs, or [B, features] when `num_outputs` is None.
    """
    image_hw: Tuple[int, ...] = x.shape[-3:-1]
    blocks = len(self.channels)
    for i, features in enumerate(self.channels):
      x = ResidualBlock(
        features,
        conv_impl=self.conv_impl,
        compute_dtype=self.compute_dtype,
        norm=self.norm,
        negative_slope=self.negative_slope,
        drop_rate=self.drop_rate,
        block_size=self.block_size if i >= blocks - 2 else 1,
        epsilon=self.epsilon,
        name=f"block{i}",
      )(x, stats_rows, train)
    if 0 in x.shape[-3:-1]:
      raise ValueError(
        f"Images of {image_hw[0]}x{image_hw[1]} are too small for "
        f"{blocks} 2x2 max-pools (at least {2**blocks}x{2**blocks})."
      )
    if self.readout == "mean":
      x = jnp.mean(x, axis=(-3, -2))
    else:
      x = x.reshape(x.shape[:-3] + (-1,))
    if self.num_outputs is None:
      return x
    return nn.Dense(self.num_outputs, name="head")(x)
