"""Omniglot as class-indexed arrays with the standard character splits.

`load` returns {"train", "val", "test"} -> `ClassImages`, one class per
character (times four with rotations), 20 images each, uint8
[num_classes, 20, image_size, image_size, 1] with ink bright (255) on
background 0.

Where the images come from:

  * a folder, `data_dir` or else the environment variable `METAJAX_DATA_DIR`,
    holding any of the official zips `images_background.zip`,
    `images_evaluation.zip`, `images_background_small1.zip`,
    `images_background_small2.zip` (read in place, never written to);
  * with neither, the official zips downloaded by tensorflow-datasets' download
    manager from the Omniglot GitHub repository, checked against their sha256.

Either way the zips go through the TFDS builder `omniglot_builder`
(one config per zip), prepared once as array_record files under `cache_dir`
and read back with `tfds.data_source` (no TensorFlow); later calls redo only
the resizing, the rotations and the split.

Which zips a split reads: "vinyals" and "lake" the full release,
`images_background.zip` and `images_evaluation.zip` (964 + 659 = 1623
characters); "seeded" those two, or those of them present, when either is,
otherwise the small zips present (242 distinct characters together);
"minimal" both small zips. `metajax.data.omniglot_archives` chooses them and
checks the split sizes, from the zips' listings, before any zip is decoded.

A character is keyed by its (alphabet, character folder) names, e.g.
("Greek", "character03"), and a key found in more than one zip is kept once,
from the first zip in the order background, evaluation, small1, small2. Greek
and Latin are in both small zips, byte for byte the same images.
"""

import functools
import os
import pathlib
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from metajax import checks
from metajax.data import omniglot_archives
from metajax.data import omniglot_builder
from metajax.data import omniglot_images
from metajax.data import sources
from metajax.data import tfds_prepare
from metajax.data.omniglot_archives import SMALL, Key, PathLike

# Re-exported: `omniglot.prepare_images` (the `as` form marks it public).
from metajax.data.omniglot_images import prepare_images as prepare_images
from metajax.data.sources import ClassImages

SPLITS = ("vinyals", "lake", "seeded", "minimal")
ROTATIONS = (0, 90, 180, 270)  # degrees, counter-clockwise (np.rot90)


def default_cache_dir() -> pathlib.Path:
  """Where prepared data goes by default: `$XDG_CACHE_HOME/metajax`, or
  `~/.cache/metajax` when that variable is unset."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache"
  )
  return pathlib.Path(base) / "metajax"


def load(
  *,
  data_dir: Optional[PathLike] = None,
  split: str = "vinyals",
  image_size: int = 28,
  rotations: bool = True,
  seed: int = 0,
  num_train: Optional[int] = None,
  num_val: Optional[int] = None,
  cache_dir: Optional[PathLike] = None,
  background: Optional[str] = None,
) -> Dict[str, ClassImages]:
  """Loads Omniglot split by character into meta-train, meta-val, meta-test.

  No character is in two splits. With `rotations`, each character of a split
  also gives the classes of its images rotated by 90, 180 and 270 degrees
  (counter-clockwise), added after the split is made, so a rotated copy of a
  test character is never in train.

  Splits:
    * "vinyals": all 1623 characters shuffled with `seed`; the first
      `num_train` (default 1200) are meta-train, the next `num_val` (default
      100) meta-val, the rest meta-test. (Vinyals et al. 2016 use 1200 / 0 /
      423; the MAML code of Finn et al. 2017 uses 1100 / 100 / 423.)
    * "lake": Lake's background / evaluation split. The background set's 964
      characters are meta-train except `num_val` (default 100) of them, drawn
      with `seed`, that are meta-val; the evaluation set's 659 are meta-test.
      `num_val=0` is Lake's protocol exactly. `num_train` must be None.
    * "seeded": whatever characters are available, shuffled with `seed`, split
      into `num_train` / `num_val` / the rest (defaults: 60% / 10% of the
      characters, rounded). Works with the two small zips alone.
    * "minimal": the Omniglot challenge's minimal setting (Lake et al. 2015,
      2019): meta-train is ONE small background set, `background` ("small1",
      the default, or "small2"), all its characters but `num_val` (default
      10%, rounded) drawn with `seed` for meta-val; meta-test is every
      character of the other small set whose alphabet the first lacks
      (small1 -> Japanese_(katakana), Sanskrit, Tagalog; small2 ->
      Balinese, Early_Aramaic, Korean). Meta-test is never rotated (Lake's
      test draws the characters as written). Needs both small zips.

  Images are resized from 105x105 with PIL's LANCZOS filter (as in the MAML
  code), on the inverted float image, then rounded and clipped to uint8.

  Args:
    data_dir: a folder holding any of the official zips (see the module
      docstring). None: `$METAJAX_DATA_DIR`, and when that is unset too, the
      zips are downloaded through tensorflow-datasets.
    split: "vinyals", "lake" or "seeded".
    image_size: side of the returned images, in pixels (28 in the papers).
    rotations: add the 90/180/270-degree rotations of every character as
      classes of their own (4x the classes), as in the papers.
    seed: seeds the character shuffle of every split.
    num_train: meta-train characters (before rotations); see the splits.
    num_val: meta-val characters (before rotations); see the splits.
    cache_dir: where the TFDS builder prepares its files (and downloads the
      zips). Default: `default_cache_dir()`.
    background: the small set split="minimal" trains on; None for the
      other splits.

  Returns:
    {"train": ..., "val": ..., "test": ...}, each a `ClassImages` whose
    `images` is one uint8 array [num_classes, 20, image_size, image_size, 1],
    ink 255 on background 0, and whose `names` are "<alphabet>/<character>"
    plus "/rot000" ... "/rot270" with rotations (e.g.
    "Greek/character03/rot090"). Classes are ordered by name.

  Raises:
    ValueError: an unknown split or bad argument; a data folder that does not
      exist or holds none of the zips; a split the available zips cannot give
      ("vinyals"/"lake" without the full release); `num_train + num_val` that
      leaves no test character. All of these are raised before any zip is
      decoded.
  """
  _check_args(
    split, image_size, rotations, seed, num_train, num_val, background
  )
  folder = omniglot_archives.data_folder(data_dir)
  archives = omniglot_archives.choose_archives(split, folder)
  cache = pathlib.Path(cache_dir) if cache_dir else default_cache_dir()
  if split == "minimal":
    return _minimal(
      folder,
      cache,
      image_size,
      rotations,
      seed,
      num_val,
      background or SMALL[0],
    )
  if folder is not None:  # counts from the zips' listings: cheap
    chars = omniglot_archives.listed_characters(folder, archives)
    counts = {a: sum(o == a for o in chars.values()) for a in archives}
  else:
    counts = {a: omniglot_builder.ARCHIVES[a].num_characters for a in archives}
  omniglot_archives.split_sizes(split, counts, num_train, num_val, folder)

  images, origin, names, _ = _read(archives, folder, cache, image_size)
  counts = {a: sum(o == a for o in origin.values()) for a in archives}
  sizes = omniglot_archives.split_sizes(
    split, counts, num_train, num_val, folder
  )
  keys = sorted(origin)
  rng = np.random.default_rng(seed)
  if split == "lake":
    background_keys = [k for k in keys if origin[k] == "background"]
    order = rng.permutation(len(background_keys))
    val = [background_keys[i] for i in order[: sizes[1]]]
    train = [background_keys[i] for i in order[sizes[1] :]]
    test = [k for k in keys if origin[k] == "evaluation"]
  else:
    order = rng.permutation(len(keys))
    train = [keys[i] for i in order[: sizes[0]]]
    val = [keys[i] for i in order[sizes[0] : sizes[0] + sizes[1]]]
    test = [keys[i] for i in order[sizes[0] + sizes[1] :]]
  return {
    name: _class_images(sorted(part), images, names, rotations, image_size)
    for name, part in (("train", train), ("val", val), ("test", test))
  }


def _check_args(
  split, image_size, rotations, seed, num_train, num_val, background
):
  """Checks the arguments that need no data."""
  if split not in SPLITS:
    raise ValueError(
      f"Unknown Omniglot split {split!r}; valid splits: {', '.join(SPLITS)}."
    )
  checks.integer("image_size", image_size, minimum=1)
  checks.boolean("rotations", rotations)
  checks.integer("seed", seed, minimum=0)
  checks.integer("num_train", num_train, minimum=1, optional=True)
  checks.integer("num_val", num_val, minimum=0, optional=True)
  if split == "lake" and num_train is not None:
    raise ValueError(
      "split='lake' takes its meta-train characters from the background "
      "set (less num_val of them); num_train must be None."
    )
  if split == "minimal":
    if num_train is not None:
      raise ValueError(
        "split='minimal' trains on all the characters of its background set "
        "but num_val; num_train must be None."
      )
    if background is not None:
      checks.one_of("background", background, SMALL)
  elif background is not None:
    raise ValueError("background is an option of split='minimal' only.")


def _read(
  archives: Sequence[str],
  folder: Optional[pathlib.Path],
  cache: pathlib.Path,
  image_size: int,
):
  """Prepares (once) and reads the archives; resizes as it reads.

  Returns:
    ({key: uint8 [n, S, S, 1]}, {key: archive}, {key: "alphabet/character"},
    {archive: its keys}), each key once in the first three (first archive in
    `ARCHIVES` order).
  """
  matrix = (
    None
    if image_size == omniglot_builder.IMAGE_SIZE
    else omniglot_images.resize_matrix(image_size)
  )
  download_config = tfds.download.DownloadConfig(
    manual_dir=os.fspath(folder) if folder is not None else None,
    try_download_gcs=False,
  )  # no probe for pre-built files: works offline
  images: Dict[Key, np.ndarray] = {}
  origin: Dict[Key, str] = {}
  names: Dict[Key, str] = {}
  members: Dict[str, List[Key]] = {}
  for archive in omniglot_builder.ARCHIVES:
    if archive not in archives:
      continue
    builder = tfds_prepare.prepare(
      functools.partial(
        omniglot_builder.MetajaxOmniglot,
        config=archive,
        data_dir=os.fspath(cache),
        file_format="array_record",
      ),
      download_config,
    )
    source = tfds.data_source(
      f"{builder.name}/{archive}",
      split="train",
      data_dir=os.fspath(cache),
      download=False,
    )
    for i in range(len(source)):
      record = source[i]
      alphabet = sources.text(record["alphabet"])
      character = sources.text(record["character"])
      key = (alphabet, character)
      members.setdefault(archive, []).append(key)
      if key in origin:
        continue
      images[key] = omniglot_images.resize(record["images"], matrix)
      origin[key] = archive
      names[key] = f"{alphabet}/{character}"
  return images, origin, names, members


def _minimal(folder, cache, image_size, rotations, seed, num_val, background):
  """The splits of split="minimal" (see `load`)."""
  if folder is not None:  # from the listing: checked before decoding
    listed = omniglot_builder.character_files(
      folder / omniglot_builder.ARCHIVES[background].filename
    )
    omniglot_archives.minimal_num_val(len(listed), num_val, background, folder)
  images, _, names, members = _read(SMALL, folder, cache, image_size)
  train_keys = sorted(members[background])
  seen = {alphabet for alphabet, _ in train_keys}
  other = next(a for a in SMALL if a != background)
  test = sorted(k for k in members[other] if k[0] not in seen)
  order = np.random.default_rng(seed).permutation(len(train_keys))
  val_size = omniglot_archives.minimal_num_val(
    len(train_keys), num_val, background, folder
  )
  val = sorted(train_keys[i] for i in order[:val_size])
  train = sorted(train_keys[i] for i in order[val_size:])
  return {
    "train": _class_images(train, images, names, rotations, image_size),
    "val": _class_images(val, images, names, rotations, image_size),
    "test": _class_images(test, images, names, False, image_size),
  }


def _class_images(
  keys: List[Key],
  images: Dict[Key, np.ndarray],
  names: Dict[Key, str],
  rotations: bool,
  image_size: int,
) -> ClassImages:
  """The classes of one split: its characters, then rotated, as arrays."""
  class_images, class_names = [], []
  for key in keys:
    for degrees in ROTATIONS if rotations else (0,):
      class_images.append(np.rot90(images[key], degrees // 90, axes=(1, 2)))
      class_names.append(
        names[key] + (f"/rot{degrees:03d}" if rotations else "")
      )
  sizes = {len(x) for x in images.values()}
  if len(sizes) == 1:  # the official release: 20 drawers per character
    shape = (len(class_images), sizes.pop(), image_size, image_size, 1)
    dense = np.empty(shape, np.uint8)
    for i, x in enumerate(class_images):
      dense[i] = x
    return ClassImages(images=dense, names=tuple(class_names))
  return ClassImages(
    images=[np.ascontiguousarray(x) for x in class_images],
    names=tuple(class_names),
  )
