"""Omniglot drawings as model inputs: the loader's resize, and a user's own.

`prepare_images` turns a user's 105x105 drawings (or any size) into the
arrays a run trained on `metajax.data.omniglot.load` expects, with the same
filter as the loader's `resize`.
"""

import os
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from metajax import checks
from metajax.data import omniglot_builder

PathLike = Union[str, os.PathLike]


def resize_matrix(image_size: int) -> np.ndarray:
  """[image_size, 105] float32: PIL's LANCZOS resize as a matrix.

  PIL resizes float ("F") images separably and linearly, so resizing the rows
  of the identity gives the filter matrix M, and M @ x @ M.T equals PIL's
  resize of x (up to float rounding) at a fraction of the cost.

  Args:
    image_size: the output side.
  """
  eye = np.eye(omniglot_builder.IMAGE_SIZE, dtype=np.float32)
  rows = Image.fromarray(eye).resize(
    (image_size, omniglot_builder.IMAGE_SIZE), Image.Resampling.LANCZOS
  )
  return np.asarray(rows, np.float32).T


def resize(images: np.ndarray, matrix: Optional[np.ndarray]) -> np.ndarray:
  """uint8 [..., 105, 105, 1] -> uint8 [..., S, S, 1] (None: unchanged)."""
  if matrix is None:
    return images
  out = matrix @ images[..., 0].astype(np.float32) @ matrix.T
  return np.rint(np.clip(out, 0, 255)).astype(np.uint8)[..., None]


def prepare_images(
  images: Sequence[Union[PathLike, Image.Image, np.ndarray]],
  image_size: int = 28,
) -> np.ndarray:
  """A user's own drawings -> the arrays a model trained by `load` expects.

  Each drawing is taken as Omniglot draws it, dark ink on a light background
  (any size, any mode), inverted so ink is bright, and resized with the same
  antialiasing filter (LANCZOS) as `load`.

  Args:
    images: file paths, PIL images, or 2-D arrays (uint8, or floats in [0, 1]).
    image_size: the side the model was trained at (`config.image_size`).

  Returns:
    uint8 [n, image_size, image_size, 1], ink 255 on background 0.
  """
  checks.integer("image_size", image_size, minimum=1)
  out = []
  for i, image in enumerate(images):
    if isinstance(image, (str, os.PathLike)):
      with Image.open(image) as im:
        gray = np.asarray(im.convert("L"), np.float32)
    elif isinstance(image, Image.Image):
      gray = np.asarray(image.convert("L"), np.float32)
    else:
      array = np.asarray(image)
      if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
      if array.ndim != 2:
        raise ValueError(
          f"images[{i}] has shape {array.shape}; expected a "
          "2-D drawing [H, W] (or [H, W, 1])."
        )
      gray = array.astype(np.float32)
      if not np.issubdtype(array.dtype, np.integer):
        gray = gray * 255.0
    ink = Image.fromarray(255.0 - gray, mode="F").resize(
      (image_size, image_size), Image.Resampling.LANCZOS
    )
    out.append(np.rint(np.clip(np.asarray(ink), 0, 255)).astype(np.uint8))
  if not out:
    raise ValueError("prepare_images needs at least one image.")
  return np.stack(out)[..., None]
