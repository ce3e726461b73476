"""miniImageNet and tieredImageNet as class-indexed arrays, from manual files.

`load("mini_imagenet")` / `load("tiered_imagenet")` return {"train", "val",
"test"} -> `ClassImages` of uint8 [n, image_size, image_size, 3] images: the
splits of Ravi & Larochelle (64 / 16 / 20 classes) and of Ren et al. (351 /
97 / 160 classes in 20 / 6 / 8 categories).

Neither can be downloaded (ImageNet's terms): the files a user has go in a
folder, `data_dir`, or else `$METAJAX_DATA_DIR/mini_imagenet` (or
`.../tiered_imagenet`):

  * miniImageNet: `mini-imagenet-cache-{train,val,test}.pkl`, or Ravi's
    `{train,val,test}.csv` beside `images/` (see
    `metajax.data.mini_imagenet_builder`);
  * tieredImageNet: `{train,val,test}_images_png.pkl` and
    `{train,val,test}_labels.pkl` (+ optional `synsets.txt`,
    `class_names.txt`; see `metajax.data.tiered_imagenet_builder`).

The files go through the TFDS builders `MetajaxMiniImagenet` /
`MetajaxTieredImagenet`, prepared once as array_record under `cache_dir` and
read back with `tfds.data_source`; once prepared, the folder is not read
again (nor needed). The arrays are held in memory: about 1.3 GB for
miniImageNet and 16.5 GB for tieredImageNet at 84x84 (a smaller
`image_size` shrinks that by its square).

Augmentation (random crop and horizontal flip of training episodes, as most
papers on these sets) is a host transform, `metajax.data.augment`.
"""

import os
import pathlib
from typing import Dict, Optional

import numpy as np
import tensorflow_datasets as tfds

from metajax.data import mini_imagenet_builder
from metajax.data import tfds_images
from metajax.data import tfds_prepare
from metajax.data import tiered_imagenet_builder
from metajax.data.sources import ClassImages

DATASETS = ("mini_imagenet", "tiered_imagenet")
IMAGE_SIZE = 84
_TITLES = {"mini_imagenet": "miniImageNet", "tiered_imagenet": "tieredImageNet"}
_MODULES = {
  "mini_imagenet": mini_imagenet_builder,
  "tiered_imagenet": tiered_imagenet_builder,
}
_BUILDERS = {
  "mini_imagenet": mini_imagenet_builder.MetajaxMiniImagenet,
  "tiered_imagenet": tiered_imagenet_builder.MetajaxTieredImagenet,
}


def load(
  dataset: str = "mini_imagenet",
  *,
  data_dir: Optional[tfds_images.PathLike] = None,
  image_size: int = IMAGE_SIZE,
  cache_dir: Optional[tfds_images.PathLike] = None,
) -> Dict[str, ClassImages]:
  """Loads miniImageNet or tieredImageNet split by class.

  Args:
    dataset: "mini_imagenet" or "tiered_imagenet".
    data_dir: the folder holding the dataset's files (see the module
      docstring). None: `$METAJAX_DATA_DIR/<dataset>`. Not read when the
      dataset is already prepared in `cache_dir`.
    image_size: side of the returned images; 84 in the papers. Other sizes
      are resized with PIL's LANCZOS filter.
    cache_dir: where the TFDS builder prepares its files. Default:
      `tfds_images.default_cache_dir()`.

  Returns:
    {"train": ..., "val": ..., "test": ...}, each a `ClassImages` of uint8
    [num_classes, n, image_size, image_size, 3] images (a list of per-class
    arrays when classes differ in size, as in tieredImageNet), classes
    ordered by name. Names are the wnids for miniImageNet, and
    "<category>/<wnid>" for tieredImageNet ("<category>/<class name>" when
    the release came without synsets.txt).

  Raises:
    ValueError: an unknown dataset or bad image_size; the dataset is not
      prepared and its files are not where they should be (the message says
      which files to put where); files that do not match the published split.
  """
  if dataset not in DATASETS:
    raise ValueError(
      f"Unknown dataset {dataset!r}; valid: {', '.join(DATASETS)}."
    )
  tfds_images.check_image_size(image_size)
  cache = (
    pathlib.Path(cache_dir) if cache_dir else (tfds_images.default_cache_dir())
  )

  def make_builder():
    return _BUILDERS[dataset](
      data_dir=os.fspath(cache), file_format="array_record"
    )

  builder = make_builder()
  if not builder.is_prepared():
    folder = manual_folder(dataset, data_dir, cache)
    _MODULES[dataset].manual_files(folder)  # names what is missing
    builder = tfds_prepare.prepare(
      make_builder,
      tfds.download.DownloadConfig(
        manual_dir=os.fspath(folder), try_download_gcs=False
      ),
    )
  out = {}
  for split in ("train", "val", "test"):
    source = builder.as_data_source(split=split)
    classes = {}
    for i in range(len(source)):
      record = source[i]
      classes[_class_name(dataset, record)] = tfds_images.resize(
        np.asarray(record["images"], np.uint8), image_size
      )
    names = sorted(classes)
    out[split] = tfds_images.class_images([classes[n] for n in names], names)
  return out


def manual_folder(
  dataset: str,
  data_dir: Optional[tfds_images.PathLike],
  cache: Optional[pathlib.Path] = None,
) -> pathlib.Path:
  """The folder of `dataset`'s files: `data_dir`, or under $METAJAX_DATA_DIR.

  Raises:
    ValueError: neither is set; the message says which files to put where.
  """
  if data_dir is not None and os.fspath(data_dir):
    return pathlib.Path(data_dir).expanduser()
  folder = tfds_images.env_folder(dataset)
  if folder is not None:
    return folder
  where = f" in {os.fspath(cache)}" if cache is not None else ""
  raise ValueError(
    f"{_TITLES[dataset]} is not prepared{where} and no folder of its files "
    f"is named: set data_dir (config.data_dir) to that folder, or put the "
    f"files in $METAJAX_DATA_DIR/{dataset}. "
    f"{_MODULES[dataset].MANUAL_DOWNLOAD_INSTRUCTIONS}"
  )


def _class_name(dataset: str, record) -> str:
  text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)
  if dataset == "mini_imagenet":
    return text(record["wnid"])
  name = text(record["wnid"]) or text(record["name"])
  return f"{text(record['category'])}/{name}"
