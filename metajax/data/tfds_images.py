"""Helpers shared by the image datasets read through tensorflow-datasets.

The loaders of CIFAR-FS / FC100 (`metajax.data.cifar`) and of miniImageNet /
tieredImageNet (`metajax.data.imagenet_subsets`) prepare a TFDS builder once
as array_record files, read it back with `tfds.data_source` (no TensorFlow
needed to read), and hand out class-indexed uint8 arrays. Images stay uint8
on the host; the models scale them by 1/255 inside the jitted step
(`metajax.learners.embedding.to_float`).
"""

import os
import pathlib
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from metajax.data import omniglot
from metajax.data.sources import DATA_DIR_ENV, ClassImages

PathLike = Union[str, os.PathLike]


# Where prepared data goes by default, `$XDG_CACHE_HOME/metajax` (or
# `~/.cache/metajax`): the same folder as Omniglot's.
default_cache_dir = omniglot.default_cache_dir


def check_image_size(image_size) -> None:
  """Raises ValueError unless `image_size` is an int >= 1."""
  if (
    not isinstance(image_size, (int, np.integer))
    or isinstance(image_size, bool)
    or image_size < 1
  ):
    raise ValueError(f"image_size must be an int >= 1, got {image_size!r}.")


def resize(images: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 [n, H, W, C] -> uint8 [n, S, S, C], PIL's LANCZOS per image.

  Args:
    images: uint8 images, C = 1 or 3.
    image_size: the output side S; images already S x S come back as they
      are (not copied).

  Returns:
    uint8 [n, image_size, image_size, C].
  """
  if images.shape[1:3] == (image_size, image_size):
    return images
  out = np.empty(
    (len(images), image_size, image_size, images.shape[-1]), np.uint8
  )
  for i, image in enumerate(images):
    im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    resized = np.asarray(
      im.resize((image_size, image_size), Image.Resampling.LANCZOS)
    )
    out[i] = resized.reshape(out.shape[1:])
  return out


def class_images(
  arrays: Sequence[np.ndarray], names: Sequence[str]
) -> ClassImages:
  """`ClassImages` of the given classes: dense when every class has n images.

  Args:
    arrays: one uint8 array [n_i, H, W, C] per class.
    names: one name per class.

  Returns:
    A `ClassImages` whose `images` is one array [num_classes, n, H, W, C] when
    all n_i are equal, else the list of arrays.
  """
  if len({len(x) for x in arrays}) == 1:
    return ClassImages(images=np.stack(arrays), names=tuple(names))
  return ClassImages(images=list(arrays), names=tuple(names))


def env_folder(subfolder: str) -> Optional[pathlib.Path]:
  """`$METAJAX_DATA_DIR/<subfolder>`, or None when the variable is unset."""
  base = os.environ.get(DATA_DIR_ENV)
  return pathlib.Path(base).expanduser() / subfolder if base else None
