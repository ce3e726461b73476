"""A TFDS builder for tieredImageNet from its common release; a class a record.

tieredImageNet (Ren et al. 2018, "Meta-Learning for Semi-Supervised Few-Shot
Classification"): 608 ImageNet classes (779,165 images, 84x84 RGB) grouped by
34 high-level categories of the ImageNet hierarchy, split by category so that
no category is in two splits: 20 / 6 / 8 categories, 351 / 97 / 160 classes
(448,695 / 124,261 / 206,209 images) for meta-train / meta-val / meta-test.
`CATEGORIES` below writes out the split of the authors' repository
(`tiered_imagenet_split/{train,val,test}.csv`): every category's WordNet id,
its WordNet name, and the wnids of its classes.

ImageNet's terms do not allow redistribution, so there is no download: the
builder reads the authors' release (`tiered-imagenet.tar`, unpacked) from the
manual folder (`tfds.download.DownloadConfig(manual_dir=...)`):

  * `train_images_png.pkl`, `val_images_png.pkl`, `test_images_png.pkl`: each
    a list of PNG-encoded 84x84 images (1-D uint8 arrays);
  * `train_labels.pkl`, `val_labels.pkl`, `test_labels.pkl`: each a dict with
    "label_specific" (the class index of every image), "label_specific_str"
    (the class names), "label_general" and "label_general_str" (the
    category index of every image, and the category names);
  * optionally `synsets.txt` and `class_names.txt` (also in the release; one
    wnid, and its class name, a line): with them each class gets its wnid and
    is checked against `CATEGORIES`.

Splits "train", "val" and "test" hold one example per class:

  * "images": uint8 [n, 84, 84, 3], RGB (the PNGs decoded with PIL);
  * "name": the class name of the release (label_specific_str);
  * "wnid": its WordNet id, or "" without synsets.txt / class_names.txt;
  * "category": its category's WordNet name (from `CATEGORIES` when the wnid
    is known, else the release's label_general_str).

Prepare with `file_format="array_record"` and read with `tfds.data_source`
(no TensorFlow). Decoding the 779,165 PNGs takes a while, once.
"""

import io
import os
import pathlib
import pickle
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from metajax.data import sources
from metajax.data.tiered_imagenet_split import CATEGORIES

IMAGE_SIZE = 84
SPLIT_NAMES = ("train", "val", "test")
NUM_CLASSES = {"train": 351, "val": 97, "test": 160}
NUM_CATEGORIES = {"train": 20, "val": 6, "test": 8}
NUM_IMAGES = {"train": 448_695, "val": 124_261, "test": 206_209}

IMAGES = {s: f"{s}_images_png.pkl" for s in SPLIT_NAMES}
LABELS = {s: f"{s}_labels.pkl" for s in SPLIT_NAMES}
SYNSETS, CLASS_NAMES = "synsets.txt", "class_names.txt"

MANUAL_DOWNLOAD_INSTRUCTIONS = (
  "Put the files of the tieredImageNet release (tiered-imagenet.tar of Ren "
  "et al., unpacked) in one folder: "
  + ", ".join(f"{IMAGES[s]}, {LABELS[s]}" for s in SPLIT_NAMES)
  + f", and optionally {SYNSETS} and {CLASS_NAMES} (to check the classes "
  "against the published split)."
)

_CITATION = """\
@inproceedings{ren2018meta,
  title={Meta-Learning for Semi-Supervised Few-Shot Classification},
  author={Ren, Mengye and Triantafillou, Eleni and Ravi, Sachin and Snell,
          Jake and Swersky, Kevin and Tenenbaum, Joshua B and Larochelle, Hugo
          and Zemel, Richard S},
  booktitle={International Conference on Learning Representations},
  year={2018},
}
"""


def split_wnids(split: str) -> Tuple[str, ...]:
  """The class wnids of `split`, category by category."""
  return tuple(w for _, _, wnids in CATEGORIES[split] for w in wnids)


def manual_files(folder: os.PathLike) -> Dict[str, pathlib.Path]:
  """The release's files in `folder`; checks none of the required is missing.

  Args:
    folder: the manual folder.

  Returns:
    {file name: path} for the six pickles, plus synsets.txt and
    class_names.txt when both are there.

  Raises:
    ValueError: the folder does not exist or lacks a required file; the
      message names the missing files and the folder.
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise ValueError(
      f"tieredImageNet folder {os.fspath(folder)} does not "
      f"exist. {MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  required = [*IMAGES.values(), *LABELS.values()]
  missing = [n for n in required if not (folder / n).is_file()]
  if missing:
    raise ValueError(
      f"tieredImageNet folder {os.fspath(folder)} lacks "
      f"{', '.join(missing)}. {MANUAL_DOWNLOAD_INSTRUCTIONS}"
    )
  names = required + [
    n
    for n in (SYNSETS, CLASS_NAMES)
    if all((folder / m).is_file() for m in (SYNSETS, CLASS_NAMES))
  ]
  return {n: folder / n for n in names}


def _load_pickle(path: os.PathLike):
  with open(path, "rb") as f:
    return pickle.load(f, encoding="latin1")


def _name_to_wnids(files) -> Optional[Dict[str, List[str]]]:
  """{class name: wnids} from synsets.txt and class_names.txt, or None."""
  if SYNSETS not in files:
    return None
  read = lambda n: [
    l.strip()
    for l in files[n].read_text(encoding="utf-8").splitlines()
    if l.strip()
  ]
  wnids, names = read(SYNSETS), read(CLASS_NAMES)
  if len(wnids) != len(names):
    raise ValueError(
      f"{SYNSETS} has {len(wnids)} lines but {CLASS_NAMES} "
      f"has {len(names)}; they should pair line by line."
    )
  out: Dict[str, List[str]] = {}
  for wnid, name in zip(wnids, names):
    out.setdefault(name, []).append(wnid)
  return out


def _decode(png) -> np.ndarray:
  """uint8 [84, 84, 3] RGB from one PNG of the release."""
  data = png.tobytes() if isinstance(png, np.ndarray) else bytes(png)
  with Image.open(io.BytesIO(data)) as im:
    image = np.asarray(im.convert("RGB"), np.uint8)
  if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
    raise ValueError(
      f"A tieredImageNet image is {image.shape[:2]}; the release's are 84x84."
    )
  return image


class MetajaxTieredImagenet(tfds.core.GeneratorBasedBuilder):
  """tieredImageNet (Ren et al. split), one record per class."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "One record per class; 84x84 uint8 RGB."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "tieredImageNet: 608 ImageNet classes in 34 categories, split "
        "20/6/8 categories (351/97/160 classes) as Ren et al. (2018). "
        "One example per class."
      ),
      features=tfds.features.FeaturesDict(
        {
          "images": tfds.features.Tensor(
            shape=(None, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8
          ),
          "name": tfds.features.Text(),
          "wnid": tfds.features.Text(),
          "category": tfds.features.Text(),
        }
      ),
      homepage="https://github.com/renmengye/few-shot-ssl-public",
      citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    files = manual_files(dl_manager.manual_dir)
    wnids_of = _name_to_wnids(files)
    return {
      split: self._generate_examples(split, files, wnids_of)
      for split in SPLIT_NAMES
    }

  def _generate_examples(
    self, split, files, wnids_of
  ) -> Iterator[Tuple[str, dict]]:
    labels = _load_pickle(files[LABELS[split]])
    labels = {sources.text(k): v for k, v in labels.items()}
    specific = np.asarray(labels["label_specific"]).reshape(-1)
    general = np.asarray(labels["label_general"]).reshape(-1)
    class_names = [sources.text(n) for n in labels["label_specific_str"]]
    category_names = [sources.text(n) for n in labels["label_general_str"]]
    pngs = _load_pickle(files[IMAGES[split]])
    if len(pngs) != len(specific):
      raise ValueError(
        f"{IMAGES[split]} holds {len(pngs)} images but {LABELS[split]} "
        f"labels {len(specific)}."
      )
    category_of = {
      w: name for _, name, wnids in CATEGORIES[split] for w in wnids
    }
    order = np.argsort(specific, kind="stable")  # rows grouped by class
    bounds = np.searchsorted(specific[order], np.arange(len(class_names) + 1))
    for label, name in enumerate(class_names):
      rows = order[bounds[label] : bounds[label + 1]]
      if not len(rows):
        continue
      wnid = self._wnid(name, split, wnids_of, category_of)
      if wnid:
        category = category_of[wnid]
      else:
        values, counts = np.unique(general[rows], return_counts=True)
        index = int(values[np.argmax(counts)])
        category = (
          category_names[index] if 0 <= index < len(category_names) else ""
        )
      yield (
        f"{label:04d}",
        {
          "images": np.stack([_decode(pngs[i]) for i in rows]),
          "name": name,
          "wnid": wnid,
          "category": category,
        },
      )

  def _wnid(self, name, split, wnids_of, category_of) -> str:
    """The wnid of class `name` of `split` ("" without the name lists)."""
    if wnids_of is None:
      return ""
    candidates = wnids_of.get(name, [])
    inside = [w for w in candidates if w in category_of]
    if not inside:
      raise ValueError(
        f"Class {name!r} of {LABELS[split]} (wnids {candidates or 'unknown'}"
        f" in {SYNSETS}) is not a {split} class of Ren et al.'s "
        "tieredImageNet split. Check which file is which."
      )
    return inside[0]
