"""A TFDS builder for miniImageNet from the files users have; a class a record.

miniImageNet (Vinyals et al. 2016) with the split of Ravi & Larochelle (2017):
100 ImageNet classes of 600 images, 84x84 RGB, split 64 / 16 / 20 into
meta-train / meta-val / meta-test. The split's WordNet ids are written out
below (`SPLITS`).

ImageNet's terms do not allow redistribution, so there is no download: the
builder reads, from the manual folder (`tfds.download.DownloadConfig(
manual_dir=...)`), either

  * the common pickle release: `mini-imagenet-cache-train.pkl`,
    `mini-imagenet-cache-val.pkl`, `mini-imagenet-cache-test.pkl`, each a
    dict {"image_data": uint8 [n, 84, 84, 3], "class_dict": {wnid: [row
    indices]}}; or
  * Ravi & Larochelle's split files `train.csv`, `val.csv`, `test.csv` (rows
    `filename,label`, with a header) beside a folder `images/` holding the
    files they name (the 84x84 images of Ravi's script, or any ImageNet
    images: those of another size are resized to 84x84 with PIL's LANCZOS).

The pickles are used when all three are present. Splits "train", "val" and
"test" hold one example per class:

  * "images": uint8 [n, 84, 84, 3] (n = 600 in the release);
  * "wnid": the class's WordNet id, e.g. "n01532829".

Every class found must belong to the split that its file names (a class of
`mini-imagenet-cache-train.pkl` must be one of the 64 meta-train wnids);
preparation stops with an error otherwise. Prepare with
`file_format="array_record"` and read with `tfds.data_source` (no TensorFlow).
"""

import csv
import os
import pathlib
import pickle
from typing import Dict, Iterator, List, Tuple

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from metajax.data import sources

IMAGE_SIZE = 84
SPLIT_NAMES = ("train", "val", "test")

# Ravi & Larochelle (2017), `data/miniImagenet/{train,val,test}.csv`.
SPLITS: Dict[str, Tuple[str, ...]] = {
  "train": tuple(
    """
        n01532829 n01558993 n01704323 n01749939 n01770081 n01843383 n01910747
        n02074367 n02089867 n02091831 n02101006 n02105505 n02108089 n02108551
        n02108915 n02111277 n02113712 n02120079 n02165456 n02457408 n02606052
        n02687172 n02747177 n02795169 n02823428 n02966193 n03017168 n03047690
        n03062245 n03207743 n03220513 n03337140 n03347037 n03400231 n03476684
        n03527444 n03676483 n03838899 n03854065 n03888605 n03908618 n03924679
        n03998194 n04067472 n04243546 n04251144 n04258138 n04275548 n04296562
        n04389033 n04435653 n04443257 n04509417 n04515003 n04596742 n04604644
        n04612504 n06794110 n07584110 n07697537 n07747607 n09246464 n13054560
        n13133613
        """.split()
  ),
  "val": tuple(
    """
        n01855672 n02091244 n02114548 n02138441 n02174001 n02950826 n02971356
        n02981792 n03075370 n03417042 n03535780 n03584254 n03770439 n03773504
        n03980874 n09256479
        """.split()
  ),
  "test": tuple(
    """
        n01930112 n01981276 n02099601 n02110063 n02110341 n02116738 n02129165
        n02219486 n02443484 n02871525 n03127925 n03146219 n03272010 n03544143
        n03775546 n04146614 n04149813 n04418357 n04522168 n07613480
        """.split()
  ),
}

PICKLES = {s: f"mini-imagenet-cache-{s}.pkl" for s in SPLIT_NAMES}
CSVS = {s: f"{s}.csv" for s in SPLIT_NAMES}
IMAGES_FOLDER = "images"

MANUAL_DOWNLOAD_INSTRUCTIONS = (
  "Put in one folder either the three pickles "
  + ", ".join(PICKLES.values())
  + " (the common miniImageNet release), or Ravi & Larochelle's split files "
  + ", ".join(CSVS.values())
  + f" beside a folder {IMAGES_FOLDER}/ holding the images they name."
)

_CITATION = """\
@inproceedings{ravi2017optimization,
  title={Optimization as a Model for Few-Shot Learning},
  author={Ravi, Sachin and Larochelle, Hugo},
  booktitle={International Conference on Learning Representations},
  year={2017},
}
"""


def manual_files(folder: os.PathLike) -> Tuple[str, Dict[str, pathlib.Path]]:
  """Which release `folder` holds, and its files; checks nothing is missing.

  Args:
    folder: the manual folder.

  Returns:
    ("pickle", {split: path}) or ("csv", {split: csv path}).

  Raises:
    ValueError: the folder does not exist, or holds neither release in full;
      the message names the missing files and the folder.
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise ValueError(
      f"miniImageNet folder {os.fspath(folder)} does not "
      f"exist. {MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  pickles = {s: folder / name for s, name in PICKLES.items()}
  if all(p.is_file() for p in pickles.values()):
    return "pickle", pickles
  csvs = {s: folder / name for s, name in CSVS.items()}
  if (
    all(p.is_file() for p in csvs.values())
    and (folder / IMAGES_FOLDER).is_dir()
  ):
    return "csv", csvs
  missing_pickles = [p.name for p in pickles.values() if not p.is_file()]
  missing_csv = [p.name for p in csvs.values() if not p.is_file()]
  if not (folder / IMAGES_FOLDER).is_dir():
    missing_csv.append(IMAGES_FOLDER + "/")
  raise ValueError(
    f"miniImageNet folder {os.fspath(folder)} lacks "
    f"{', '.join(missing_pickles)} (pickle release) and {', '.join(missing_csv)} (csv release). "
    f"{MANUAL_DOWNLOAD_INSTRUCTIONS}"
  )


def check_split(split: str, wnids, source: str) -> None:
  """Raises ValueError unless every wnid is one of `split`'s published ones."""
  wrong = sorted(set(wnids) - set(SPLITS[split]))
  if wrong:
    raise ValueError(
      f"{source} holds {len(wrong)} classes that are not {split} classes of "
      f"Ravi & Larochelle's miniImageNet split: {', '.join(wrong[:5])}"
      f"{' ...' if len(wrong) > 5 else ''}. Check which file is which."
    )


def _load_pickle(path: os.PathLike):
  with open(path, "rb") as f:
    return pickle.load(f, encoding="latin1")


def _read_image(path: os.PathLike) -> np.ndarray:
  """uint8 [84, 84, 3] from an image file (resized with LANCZOS if needed)."""
  with Image.open(path) as f:
    im = f.convert("RGB")
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
      im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(im, np.uint8)


class MetajaxMiniImagenet(tfds.core.GeneratorBasedBuilder):
  """miniImageNet (Ravi & Larochelle split), one record per class."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "One record per class; 84x84 uint8."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "miniImageNet: 100 ImageNet classes of 600 84x84 images, split "
        "64/16/20 as Ravi & Larochelle (2017). One example per class."
      ),
      features=tfds.features.FeaturesDict(
        {
          "images": tfds.features.Tensor(
            shape=(None, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8
          ),
          "wnid": tfds.features.Text(),
        }
      ),
      homepage="https://github.com/twitter-research/meta-learning-lstm",
      citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    kind, files = manual_files(dl_manager.manual_dir)
    return {
      split: self._generate_examples(split, kind, files[split])
      for split in SPLIT_NAMES
    }

  def _generate_examples(self, split, kind, path):
    if kind == "pickle":
      return self._from_pickle(split, path)
    return self._from_csv(split, path)

  def _from_pickle(self, split, path) -> Iterator[Tuple[str, dict]]:
    data = _load_pickle(path)
    data = {sources.text(k): v for k, v in data.items()}
    images = np.asarray(data["image_data"])
    if images.dtype != np.uint8 or images.shape[1:] != (
      IMAGE_SIZE,
      IMAGE_SIZE,
      3,
    ):
      raise ValueError(
        f"{os.fspath(path)}: image_data is {images.dtype} "
        f"{images.shape}; expected uint8 [n, 84, 84, 3]."
      )
    class_dict = {sources.text(k): v for k, v in data["class_dict"].items()}
    check_split(split, class_dict, os.fspath(path))
    for wnid in sorted(class_dict):
      rows = np.asarray(class_dict[wnid], np.int64)
      yield wnid, {"images": images[rows], "wnid": wnid}

  def _from_csv(self, split, path) -> Iterator[Tuple[str, dict]]:
    files: Dict[str, List[str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
      for row in csv.reader(f):
        if len(row) < 2 or row[0] == "filename":
          continue
        files.setdefault(row[1], []).append(row[0])
    check_split(split, files, os.fspath(path))
    folder = pathlib.Path(path).parent / IMAGES_FOLDER
    for wnid in sorted(files):
      missing = [n for n in files[wnid] if not (folder / n).is_file()]
      if missing:
        raise ValueError(
          f"{os.fspath(folder)} lacks {len(missing)} images that "
          f"{os.fspath(path)} names, e.g. {missing[0]}."
        )
      images = np.stack([_read_image(folder / n) for n in files[wnid]])
      yield wnid, {"images": images, "wnid": wnid}
