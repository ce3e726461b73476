"""Flax modules for few-shot learners, used only through init/apply.

Every model has a single 'params' collection and no state: batch norm uses
the statistics of the current batch.
"""

from metajax.models.conv4 import Conv4
from metajax.models.layers import BatchStatNorm
from metajax.models.layers import Conv
from metajax.models.layers import batch_stat_norm
from metajax.models.layers import conv2d
from metajax.models.layers import conv2d_patches
from metajax.models.layers import conv2d_xla
from metajax.models.layers import drop_block
from metajax.models.layers import extract_patches
from metajax.models.layers import max_pool
from metajax.models.mlp import MLP
from metajax.models.resnet12 import ResNet12

__all__ = (
  "BatchStatNorm",
  "Conv",
  "Conv4",
  "MLP",
  "ResNet12",
  "batch_stat_norm",
  "conv2d",
  "conv2d_patches",
  "conv2d_xla",
  "drop_block",
  "extract_patches",
  "max_pool",
)
