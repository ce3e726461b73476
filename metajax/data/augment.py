"""Data augmentation of training episodes, on the host, on uint8 images.

Most papers on CIFAR-FS, FC100, miniImageNet and tieredImageNet train with
random crops (of the image padded by a few pixels) and horizontal flips.
`Augmented` wraps any task source and applies both to every support and query
image of the meta-batches it samples, with the step's own numpy Generator,
so a resumed run augments exactly as an uninterrupted one. It is cheap numpy
indexing on uint8 arrays; the images still cross to the device as uint8 and
are scaled by 1/255 inside the jitted step (`metajax.data.preprocess`).

`Warped` applies random affine warps instead (rotation, shear, scale and
translation, as Koch et al. 2015 distort Omniglot's drawings).

Only meta-training sources should be wrapped: validation and test episodes
stay as they are.
"""

from typing import Sequence

import numpy as np

from metajax import checks

from metajax.types import Episode


def crop_and_flip(
  images: np.ndarray, rng: np.random.Generator, *, pad: int, flip: bool
) -> np.ndarray:
  """Random crops of the zero-padded images, and random horizontal flips.

  Args:
    images: [..., H, W, C], any leading axes (tasks, examples).
    rng: draws one offset (and one flip) per image.
    pad: pixels of zeros added on every side before cropping back to H x W;
      0 keeps the images where they are.
    flip: flip each image left-right with probability 1/2.

  Returns:
    An array of the shape and dtype of `images`.
  """
  shape = images.shape
  x = images.reshape((-1,) + shape[-3:])
  n, height, width = x.shape[:3]
  if pad:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  top = rng.integers(0, 2 * pad + 1, size=n)
  left = rng.integers(0, 2 * pad + 1, size=n)
  rows = top[:, None] + np.arange(height)
  cols = left[:, None] + np.arange(width)
  if flip:
    cols = np.where(rng.random(n)[:, None] < 0.5, cols[:, ::-1], cols)
  out = x[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return out.reshape(shape)


def affine_warp(
  images: np.ndarray,
  rng: np.random.Generator,
  *,
  rotation: float,
  shear: float,
  scale: Sequence[float],
  translate: float,
) -> np.ndarray:
  """Random affine warps about each image's centre, bilinear, 0 outside.

  Per image, uniformly: a rotation in [-rotation, rotation] degrees, a shear
  in [-shear, shear] degrees, a scale per axis in [scale[0], scale[1]], and a
  shift per axis of up to `translate` times the side.

  Args:
    images: [..., H, W, C] uint8 or float, any leading axes.
    rng: draws the warps.
    rotation, shear, scale, translate: the ranges above.

  Returns:
    An array of the shape and dtype of `images`.
  """
  shape = images.shape
  x = images.reshape((-1,) + shape[-3:]).astype(np.float32)
  n, height, width = x.shape[:3]
  angle = np.deg2rad(rng.uniform(-rotation, rotation, n))
  slant = np.tan(np.deg2rad(rng.uniform(-shear, shear, n)))
  sizes = rng.uniform(scale[0], scale[1], (n, 2))
  shift = rng.uniform(-translate, translate, (n, 2)) * (height, width)
  cos, sin = np.cos(angle), np.sin(angle)
  forward = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
  forward = forward @ np.stack(
    [
      np.stack([np.ones(n), slant], -1),
      np.stack([np.zeros(n), np.ones(n)], -1),
    ],
    1,
  )
  forward = forward * sizes[:, None, :]  # (row, col) coordinates
  out = warp(x, forward, shift)
  if np.issubdtype(images.dtype, np.integer):
    out = np.rint(np.clip(out, 0, np.iinfo(images.dtype).max))
  return out.astype(images.dtype).reshape(shape)


def warp(x: np.ndarray, forward: np.ndarray, shift: np.ndarray) -> np.ndarray:
  """x [n, H, W, C] warped: output pixel p reads x at forward^-1 (p - shift),
  coordinates (row, col) about the centre, bilinear, 0 outside; float32."""
  n, height, width = x.shape[:3]
  inverse = np.linalg.inv(forward).astype(np.float32)
  rows = np.arange(height, dtype=np.float32) - (height - 1) / 2
  cols = np.arange(width, dtype=np.float32) - (width - 1) / 2
  # Where each output pixel (r, c) reads from: inverse @ ((r, c) - shift).
  r = (rows[None, :, None] - shift[:, None, None, 0]).astype(np.float32)
  c = (cols[None, None, :] - shift[:, None, None, 1]).astype(np.float32)
  src_r = inverse[:, 0, 0, None, None] * r + inverse[:, 0, 1, None, None] * c
  src_c = inverse[:, 1, 0, None, None] * r + inverse[:, 1, 1, None, None] * c
  src_r, src_c = src_r + (height - 1) / 2, src_c + (width - 1) / 2
  top, left = np.floor(src_r), np.floor(src_c)
  dy, dx = src_r - top, src_c - left
  flat = x.reshape(n, height * width, -1)
  out = np.zeros((n, height * width, x.shape[-1]), np.float32)
  for row, col, weight in (
    (top, left, (1 - dy) * (1 - dx)),
    (top, left + 1, (1 - dy) * dx),
    (top + 1, left, dy * (1 - dx)),
    (top + 1, left + 1, dy * dx),
  ):
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    index = (
      np.clip(row, 0, height - 1).astype(np.int32) * width
      + np.clip(col, 0, width - 1).astype(np.int32)
    ).reshape(n, -1, 1)
    out += np.take_along_axis(flat, index, axis=1) * (weight * inside).reshape(
      n, -1, 1
    )
  return out.reshape(x.shape)


class _Transformed:
  """A task source whose training images pass through `transform`."""

  def __getattr__(self, name):  # e.g. num_classes of a ClassBatchSampler
    if name == "source":  # not set yet
      raise AttributeError(name)
    return getattr(self.source, name)

  def transform(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    raise NotImplementedError

  def sample_batch(
    self, rng: np.random.Generator, meta_batch_size: int
  ) -> Episode:
    batch = self.source.sample_batch(rng, meta_batch_size)
    return batch._replace(
      support_x=self.transform(batch.support_x, rng),
      query_x=self.transform(batch.query_x, rng),
    )


class Augmented(_Transformed):
  """A task source whose episodes are randomly cropped and flipped.

  Example:
    Training episodes, cropped and flipped::

      train = Augmented(EpisodeSampler(splits["train"], ways=5, shots=1,
                                       queries=15), pad=8)

  Attributes:
    source: the wrapped source (`sample_batch(rng, size) -> Episode`).
    pad: padding of the random crops, in pixels (4 for 32x32 CIFAR images
      and 8 for 84x84 ImageNet ones, as usual).
    flip: random horizontal flips.
  """

  def __init__(self, source, *, pad: int, flip: bool = True):
    if (
      not isinstance(pad, (int, np.integer)) or isinstance(pad, bool) or pad < 0
    ):
      raise ValueError(f"pad must be an integer >= 0, got {pad!r}.")
    self.source, self.pad, self.flip = source, int(pad), bool(flip)

  def transform(self, x, rng):
    """`x` randomly cropped and flipped (`crop_and_flip`)."""
    return crop_and_flip(x, rng, pad=self.pad, flip=self.flip)


class Warped(_Transformed):
  """A task source whose episodes are randomly warped (`affine_warp`).

  Example:
    Training episodes, warped::

      train = Warped(EpisodeSampler(splits["train"], ways=60, shots=1,
                                    queries=5))

  Attributes:
    source: the wrapped source (`sample_batch(rng, size) -> Episode`).
    rotation: degrees, up to this either way.
    shear: degrees, up to this either way.
    scale: (low, high) scale of each axis.
    translate: shift of each axis, up to this fraction of the side.
  """

  def __init__(
    self,
    source,
    *,
    rotation: float = 10.0,
    shear: float = 10.0,
    scale: Sequence[float] = (0.8, 1.2),
    translate: float = 0.1,
  ):
    for name, value in (
      ("rotation", rotation),
      ("shear", shear),
      ("translate", translate),
    ):
      checks.number(name, value, low=0)
    scale = tuple(scale)
    if len(scale) != 2 or not 0 < checks.number("scale[0]", scale[0]) <= (
      checks.number("scale[1]", scale[1])
    ):
      raise ValueError(
        f"scale must be (low, high) with 0 < low <= high, got {scale!r}."
      )
    self.source, self.rotation, self.shear = source, rotation, shear
    self.scale, self.translate = scale, translate

  def transform(self, x, rng):
    """`x` randomly warped (`affine_warp`)."""
    return affine_warp(
      x,
      rng,
      rotation=self.rotation,
      shear=self.shear,
      scale=self.scale,
      translate=self.translate,
    )
