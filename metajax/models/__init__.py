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
from metajax.models.layers import extract_patches
from metajax.models.layers import max_pool
from metajax.models.mlp import MLP

__all__ = (
  "BatchStatNorm",
  "Conv",
  "Conv4",
  "MLP",
  "batch_stat_norm",
  "conv2d",
  "conv2d_patches",
  "conv2d_xla",
  "extract_patches",
  "max_pool",
)
