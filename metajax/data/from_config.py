"""The data of a config: its splits, task sources and example shapes.

The data half of `metajax.from_config` (see there for the config's fields):
`dataset` ("sinusoid" or an image dataset), `data_dir`, `data_kwargs` (the
dataset loader's options), `image_size`, `augment`, `augment_pad`, `warp`
and `warp_kwargs` (options of `augment.Warped`), `test_within_groups`,
`train_within_groups`, `batch_size`, and the episode sizes `ways`, `shots`,
`queries` and their test_* values.
"""

from typing import Any, Dict

import numpy as np

from metajax.checks import ConfigError
from metajax.data import augment
from metajax.data import episodes as episodes_lib
from metajax.data.sinusoid import SinusoidSampler
from metajax.types import TRAIN_ON, Episode

# The image datasets and their images' own side (the default image_size).
IMAGE_DATASETS = {
  "omniglot": 28,
  "cifar_fs": 32,
  "fc100": 32,
  "mini_imagenet": 84,
  "tiered_imagenet": 84,
}
DATASETS = ("sinusoid",) + tuple(IMAGE_DATASETS)


def test_value(config, name):
  """`config.test_<name>`, or `config.<name>` when that is None."""
  value = config.get("test_" + name)
  return config[name] if value is None else value


def image_size(config) -> int:
  """`config.image_size`, or the dataset's own when unset (None)."""
  size = config.image_size
  return IMAGE_DATASETS[config.dataset] if size is None else size


def load_splits(config):
  """{"train", "val", "test"} -> ClassImages of the config's image dataset.

  `data_dir`: Omniglot's zips, the folder of the miniImageNet /
  tieredImageNet files, or the TFDS data_dir of cifar100 (docs/datasets.md);
  `data_kwargs` go to the dataset's loader (Omniglot: split, seed,
  num_train, num_val, rotations).
  """
  # pylint: disable=g-import-not-at-top
  # `loader` is one of three modules with the same `load`: mypy takes the
  # second and third imports for redefinitions.
  if config.dataset in ("cifar_fs", "fc100"):
    from metajax.data import cifar as loader
  elif config.dataset in ("mini_imagenet", "tiered_imagenet"):
    from metajax.data import imagenet_subsets as loader  # type: ignore[no-redef]
  else:
    from metajax.data import omniglot as loader  # type: ignore[no-redef]
  # pylint: enable=g-import-not-at-top
  kwargs = dict(
    data_dir=config.data_dir or None,
    image_size=image_size(config),
    **config.data_kwargs.to_dict(),
  )
  if config.dataset != "omniglot":
    kwargs["dataset"] = config.dataset
  try:
    return loader.load(**kwargs)
  except TypeError as e:
    raise ConfigError(
      f"config.data_kwargs of {config.dataset!r}: {e}"
    ) from None


def sources(config, train_on: str = "episodes") -> Dict[str, Any]:
  """Task sources "train", "val" and "test" (these two at the test_* sizes).

  The training source is what the learner trains on (`train_on`, the
  learner's `Learner.train_on`): episodes, or mini-batches of
  `config.batch_size` over all classes ("class_batches").

  Raises `ConfigError` when the episodes cannot be drawn from the split
  (more ways than classes, more shots + queries than examples).
  """
  if config.dataset == "sinusoid":
    train: episodes_lib.TaskSource = SinusoidSampler(
      shots=config.shots, queries=config.queries
    )
    test = SinusoidSampler(
      shots=test_value(config, "shots"), queries=test_value(config, "queries")
    )
    return {"train": train, "val": test, "test": test}
  splits = load_splits(config)
  test_sizes = [test_value(config, n) for n in ("ways", "shots", "queries")]

  def sampler(split, ways, shots, queries, *, prefix=""):
    within = {
      "train": config.train_within_groups,
      "test": config.test_within_groups,
    }
    groups = splits[split].name_groups() if within.get(split) else None
    try:
      return episodes_lib.EpisodeSampler(
        splits[split], ways=ways, shots=shots, queries=queries, groups=groups
      )
    except ValueError as e:
      raise ConfigError(
        f"config.{prefix}ways / {prefix}shots / "
        f"{prefix}queries on the {split} split: {e}"
      ) from None

  if train_on not in TRAIN_ON:
    raise ValueError(
      f"{config.learner}'s train_on={train_on!r}; valid: {TRAIN_ON}."
    )
  if train_on == "class_batches":
    if config.train_within_groups:
      raise ConfigError(
        "config.train_within_groups draws training episodes, but "
        f"{config.learner} trains on mini-batches of all classes."
      )
    if config.batch_size is None:
      raise ConfigError(
        f"config.batch_size is unset: {config.learner} "
        "trains on mini-batches of all meta-train classes."
      )
    train = episodes_lib.ClassBatchSampler(
      splits["train"], batch_size=config.batch_size
    )
  else:
    train = sampler("train", config.ways, config.shots, config.queries)
  if config.augment:
    pad = config.augment_pad
    if pad is None:  # 4 pixels at 32x32, 8 at 84x84, as in the papers
      pad = min(8, max(1, image_size(config) // 8))
    train = augment.Augmented(train, pad=pad)
  if config.warp:
    try:
      train = augment.Warped(train, **config.warp_kwargs.to_dict())
    except (TypeError, ValueError) as e:
      raise ConfigError(f"config.warp_kwargs: {e}") from None
  return {
    "train": train,
    "val": sampler("val", *test_sizes, prefix="test_"),
    "test": sampler("test", *test_sizes, prefix="test_"),
  }


def input_shape(config):
  """The shape of one input example of the config's dataset."""
  if config.dataset == "sinusoid":
    return (1,)
  size = image_size(config)
  return (size, size, 1 if config.dataset == "omniglot" else 3)


def example_episode(config) -> Episode:
  """A meta-batch of one zero episode with one example of each set."""
  shape = input_shape(config)
  if config.dataset == "sinusoid":
    z = np.zeros((1, 1) + shape, np.float32)
    y = np.zeros((1, 1, 1), np.float32)
    return Episode(z, y, z, y)
  z = np.zeros((1, 1) + shape, np.uint8)
  y = np.zeros((1, 1), np.int32)
  return Episode(z, y, z, y)
