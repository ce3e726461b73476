"""CIFAR-FS and FC100: few-shot splits of CIFAR-100's 100 classes.

`load("cifar_fs")` and `load("fc100")` return {"train", "val", "test"} ->
`ClassImages`, uint8 [num_classes, 600, 32, 32, 3]: each class pools the 500
training and 100 test images of the `cifar100` dataset of
tensorflow-datasets (as both papers do).

  * CIFAR-FS (Bertinetto et al. 2019, "Meta-learning with differentiable
    closed-form solvers"): 64 / 16 / 20 classes drawn at random across
    superclasses; the lists below are those of the authors' release
    (`splits/bertinetto/{train,val,test}.txt`).
  * FC100 (Oreshkin et al. 2018, "TADAM"): split by superclass so that the
    splits share no superclass: 12 / 4 / 4 superclasses, 60 / 20 / 20
    classes. Superclass indices (CIFAR-100's `coarse_label`): train 1, 2, 3,
    4, 5, 6, 9, 10, 15, 17, 18, 19; val 8, 11, 13, 16; test 0, 7, 12, 14.

Classes are matched by CIFAR-100's fine label index (`label`), whose names
(`FINE_LABELS`) and superclasses (`SUPERCLASSES`) are written out below, so
neither split depends on the dataset's metadata.

Where the data comes from: `tfds.builder("cifar100")` prepared once, as
array_record, in `data_dir` (default `tfds_images.default_cache_dir()`) and
read back with `tfds.data_source`. Preparing downloads the official archive
from the CIFAR site and, in tensorflow-datasets' own cifar builder, needs
TensorFlow (`pip install tensorflow-cpu`) once; reading does not. A
`data_dir` that already holds `cifar100` prepared as array_record (e.g.
`tfds build cifar100 --file_format=array_record --data_dir=...` on another
machine) is read as it is, offline.
"""

import importlib.util
import os
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow_datasets as tfds

from metajax.data import tfds_images
from metajax.data import tfds_prepare
from metajax.data.sources import ClassImages

DATASETS = ("cifar_fs", "fc100")
IMAGE_SIZE = 32
TFDS_NAME = "cifar100"
_READ_BATCH = 1000  # records per read of the data source

# CIFAR-100's fine labels, by index (the `label` of tensorflow-datasets).
FINE_LABELS: Tuple[str, ...] = tuple(
  """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy
bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee
clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate
poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark
shrew skunk skyscraper snail snake spider squirrel streetcar sunflower
sweet_pepper table tank telephone television tiger tractor train trout tulip
turtle wardrobe whale willow_tree wolf woman worm
""".split()
)

# CIFAR-100's 20 superclasses, by index (the `coarse_label`), with their
# five fine classes each.
SUPERCLASSES: Tuple[Tuple[str, Tuple[str, ...]], ...] = tuple(
  (name, tuple(members.split()))
  for name, members in (
    ("aquatic_mammals", "beaver dolphin otter seal whale"),
    ("fish", "aquarium_fish flatfish ray shark trout"),
    ("flowers", "orchid poppy rose sunflower tulip"),
    ("food_containers", "bottle bowl can cup plate"),
    ("fruit_and_vegetables", "apple mushroom orange pear sweet_pepper"),
    (
      "household_electrical_devices",
      "clock keyboard lamp telephone television",
    ),
    ("household_furniture", "bed chair couch table wardrobe"),
    ("insects", "bee beetle butterfly caterpillar cockroach"),
    ("large_carnivores", "bear leopard lion tiger wolf"),
    ("large_man-made_outdoor_things", "bridge castle house road skyscraper"),
    ("large_natural_outdoor_scenes", "cloud forest mountain plain sea"),
    (
      "large_omnivores_and_herbivores",
      "camel cattle chimpanzee elephant kangaroo",
    ),
    ("medium_mammals", "fox porcupine possum raccoon skunk"),
    ("non-insect_invertebrates", "crab lobster snail spider worm"),
    ("people", "baby boy girl man woman"),
    ("reptiles", "crocodile dinosaur lizard snake turtle"),
    ("small_mammals", "hamster mouse rabbit shrew squirrel"),
    ("trees", "maple_tree oak_tree palm_tree pine_tree willow_tree"),
    ("vehicles_1", "bicycle bus motorcycle pickup_truck train"),
    ("vehicles_2", "lawn_mower rocket streetcar tank tractor"),
  )
)

# CIFAR-FS, Bertinetto et al.'s release.
CIFAR_FS_SPLITS: Dict[str, Tuple[str, ...]] = {
  "train": tuple(
    """
        dolphin seal aquarium_fish ray trout orchid sunflower tulip bottle bowl
        can cup plate apple mushroom orange pear clock keyboard chair couch bee
        caterpillar cockroach bear lion tiger wolf bridge castle house road
        skyscraper cloud forest mountain elephant kangaroo porcupine possum
        raccoon skunk lobster spider boy girl dinosaur lizard snake turtle
        hamster mouse rabbit shrew squirrel oak_tree palm_tree pine_tree
        willow_tree bus train lawn_mower streetcar tank
        """.split()
  ),
  "val": tuple(
    """
        beaver otter flatfish shark lamp television beetle butterfly sea camel
        cattle crab crocodile maple_tree motorcycle tractor
        """.split()
  ),
  "test": tuple(
    """
        whale poppy rose sweet_pepper telephone bed table wardrobe leopard
        plain chimpanzee fox snail worm baby man woman bicycle pickup_truck
        rocket
        """.split()
  ),
}

# FC100, Oreshkin et al.: superclass indices of each split.
FC100_SUPERCLASSES: Dict[str, Tuple[int, ...]] = {
  "train": (1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19),
  "val": (8, 11, 13, 16),
  "test": (0, 7, 12, 14),
}


def split_classes(dataset: str) -> Dict[str, Tuple[str, ...]]:
  """The fine class names of each split of `dataset`, as published.

  Args:
    dataset: "cifar_fs" or "fc100".

  Returns:
    {"train": names, "val": names, "test": names}; FC100's classes are listed
    superclass by superclass.
  """
  if dataset == "cifar_fs":
    return dict(CIFAR_FS_SPLITS)
  if dataset == "fc100":
    return {
      split: tuple(c for s in supers for c in SUPERCLASSES[s][1])
      for split, supers in FC100_SUPERCLASSES.items()
    }
  raise ValueError(
    f"Unknown CIFAR few-shot dataset {dataset!r}; valid: {', '.join(DATASETS)}."
  )


def load(
  dataset: str = "cifar_fs",
  *,
  data_dir: Optional[tfds_images.PathLike] = None,
  image_size: int = IMAGE_SIZE,
) -> Dict[str, ClassImages]:
  """Loads CIFAR-FS or FC100 as class-indexed arrays.

  Args:
    dataset: "cifar_fs" or "fc100".
    data_dir: the tensorflow-datasets data_dir that holds (or receives)
      `cifar100` prepared as array_record. Default:
      `tfds_images.default_cache_dir()`.
    image_size: side of the returned images (32, CIFAR's own, in both
      papers); other sizes are resized with PIL's LANCZOS filter.

  Returns:
    {"train": ..., "val": ..., "test": ...}, each a `ClassImages` whose
    `images` is uint8 [num_classes, 600, image_size, image_size, 3] (fewer
    than 600 only if the prepared data is partial) and whose `names` are the
    fine class names, in the order of `split_classes(dataset)`.

  Raises:
    ValueError: an unknown dataset, a bad image_size, or a split class with
      no image in the data.
    RuntimeError: cifar100 is not prepared in `data_dir` and preparing it
      needs TensorFlow, which is not installed.
  """
  splits = split_classes(dataset)
  tfds_images.check_image_size(image_size)
  by_label = _read_cifar100(data_dir)
  index = {name: i for i, name in enumerate(FINE_LABELS)}
  out = {}
  for split, names in splits.items():
    arrays = []
    for name in names:
      images = by_label.get(index[name])
      if images is None:
        raise ValueError(
          f"{TFDS_NAME} in {os.fspath(_data_dir(data_dir))} has no image of "
          f"class {name!r} (label {index[name]}), which {dataset} puts in "
          f"{split}; prepare the full dataset."
        )
      arrays.append(tfds_images.resize(images, image_size))
    out[split] = tfds_images.class_images(arrays, names)
  return out


def _data_dir(data_dir):
  return (
    tfds_images.default_cache_dir()
    if data_dir is None
    else os.path.expanduser(os.fspath(data_dir))
  )


def _needs_tensorflow(data_dir) -> RuntimeError:
  return RuntimeError(
    f"{TFDS_NAME} is not prepared in {os.fspath(_data_dir(data_dir))}, "
    "and tensorflow-datasets' cifar builder needs TensorFlow to prepare "
    "it: `pip install tensorflow-cpu` and run once (it downloads the "
    "CIFAR-100 archive), or name a data_dir holding cifar100 prepared "
    "as array_record (`tfds build cifar100 --file_format=array_record`)."
  )


def _check_can_prepare(builder, data_dir) -> None:
  """Before any download: without TensorFlow the archive would be fetched
  and then fail to convert."""
  if (
    not builder.is_prepared() and importlib.util.find_spec("tensorflow") is None
  ):
    raise _needs_tensorflow(data_dir)


def _read_cifar100(data_dir) -> Dict[int, np.ndarray]:
  """{fine label: uint8 [n, 32, 32, 3]} over cifar100's train and test."""

  def make_builder():
    return tfds.builder(
      TFDS_NAME,
      data_dir=os.fspath(_data_dir(data_dir)),
      file_format="array_record",
    )

  _check_can_prepare(make_builder(), data_dir)
  try:
    builder = tfds_prepare.prepare(
      make_builder, tfds.download.DownloadConfig(try_download_gcs=False)
    )
  except ModuleNotFoundError as e:
    if e.name != "tensorflow":
      raise
    raise _needs_tensorflow(data_dir) from e
  lists: Dict[int, list] = {}
  for split in ("train", "test"):
    source = builder.as_data_source(split=split)
    get_many = getattr(source, "__getitems__", None)  # batched reads
    for start in range(0, len(source), _READ_BATCH):
      keys = list(range(start, min(start + _READ_BATCH, len(source))))
      records = get_many(keys) if get_many else [source[i] for i in keys]
      for record in records:
        lists.setdefault(int(record["label"]), []).append(
          np.asarray(record["image"], np.uint8)
        )
  return {label: np.stack(images) for label, images in lists.items()}
