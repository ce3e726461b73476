"""Data augmentation of training episodes, on the host, on uint8 images.

Most papers on CIFAR-FS, FC100, miniImageNet and tieredImageNet train with
random crops (of the image padded by a few pixels) and horizontal flips.
`Augmented` wraps any task source and applies both to every support and query
image of the meta-batches it samples, with the step's own numpy Generator,
so a resumed run augments exactly as an uninterrupted one. It is cheap numpy
indexing on uint8 arrays; the images still cross to the device as uint8 and
are scaled by 1/255 inside the jitted step (`metajax.data.preprocess`).

Only meta-training sources should be wrapped: validation and test episodes
stay as they are.
"""

import numpy as np

from metajax.types import Episode


def crop_and_flip(images: np.ndarray, rng: np.random.Generator, *,
                  pad: int, flip: bool) -> np.ndarray:
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


class Augmented:
  """A task source whose episodes are randomly cropped and flipped.

  Example:
    train = Augmented(EpisodeSampler(splits["train"], ways=5, shots=1,
                                     queries=15), pad=8)

  Attributes:
    source: the wrapped source (`sample_batch(rng, size) -> Episode`).
    pad: padding of the random crops, in pixels (4 for 32x32 CIFAR images
      and 8 for 84x84 ImageNet ones, as usual).
    flip: random horizontal flips.
  """

  def __init__(self, source, *, pad: int, flip: bool = True):
    if (not isinstance(pad, (int, np.integer)) or isinstance(pad, bool)
        or pad < 0):
      raise ValueError(f"pad must be an integer >= 0, got {pad!r}.")
    self.source, self.pad, self.flip = source, int(pad), bool(flip)

  def __getattr__(self, name):  # e.g. num_classes of a ClassBatchSampler
    if name == "source":  # not set yet
      raise AttributeError(name)
    return getattr(self.source, name)

  def sample_batch(self, rng: np.random.Generator,
                   meta_batch_size: int) -> Episode:
    batch = self.source.sample_batch(rng, meta_batch_size)
    augment = lambda x: crop_and_flip(x, rng, pad=self.pad, flip=self.flip)
    return batch._replace(support_x=augment(batch.support_x),
                          query_x=augment(batch.query_x))
