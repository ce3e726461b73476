"""Class-indexed sources: what every classification dataset loader returns."""

from typing import List, NamedTuple, Sequence, Union

import numpy as np

# The environment variable naming the folder of a user's dataset files
# (Omniglot's zips, or a subfolder per dataset for the others).
DATA_DIR_ENV = "METAJAX_DATA_DIR"


class ClassImages(NamedTuple):
  """Images of one split, indexed by class.

  Attributes:
    images: one uint8 array [n_i, H, W, C] per class, or one dense uint8 array
      [num_classes, n, H, W, C] when every class has n examples.
    names: one human-readable name per class (e.g. "Greek/character03/rot090").
  """

  images: Union[np.ndarray, Sequence[np.ndarray]]
  names: Sequence[str]

  @property
  def num_classes(self) -> int:
    """The number of classes."""
    return len(self.images)

  def min_examples(self) -> int:
    """The fewest examples any class has."""
    return min(len(c) for c in self.images)

  def name_groups(self) -> List[str]:
    """Each class name's part before its first "/": for Omniglot
    ("<alphabet>/<character>[/rot<degrees>]") the alphabets, which
    `EpisodeSampler(groups=...)` takes for within-alphabet episodes."""
    return [str(name).split("/")[0] for name in self.names]


def text(value) -> str:
  """A record's string field (bytes from a TFDS data source) as str."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
