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

IMAGE_SIZE = 84
SPLIT_NAMES = ("train", "val", "test")
NUM_CLASSES = {"train": 351, "val": 97, "test": 160}
NUM_CATEGORIES = {"train": 20, "val": 6, "test": 8}
NUM_IMAGES = {"train": 448_695, "val": 124_261, "test": 206_209}


def _wnids(text: str) -> Tuple[str, ...]:
  return tuple(text.split())


# split -> ((category wnid, category name, class wnids), ...), as in Ren et
# al.'s `fewshot/data/tiered_imagenet_split/{train,val,test}.csv`.
CATEGORIES: Dict[str, Tuple[Tuple[str, str, Tuple[str, ...]], ...]] = {
    "train": (
        ("n01524359", "passerine", _wnids("""
            n01530575 n01531178 n01532829 n01534433 n01537544 n01558993
            n01560419 n01580077 n01582220 n01592084 n01601694
            """)),
        ("n01674216", "saurian", _wnids("""
            n01675722 n01677366 n01682714 n01685808 n01687978 n01688243
            n01689811 n01692333 n01693334 n01694178 n01695060
            """)),
        ("n01726692", "snake", _wnids("""
            n01728572 n01728920 n01729322 n01729977 n01734418 n01735189
            n01737021 n01739381 n01740131 n01742172 n01744401 n01748264
            n01749939 n01751748 n01753488 n01755581 n01756291
            """)),
        ("n01844917", "aquatic bird", _wnids("""
            n01847000 n01855032 n01855672 n01860187 n02002556 n02002724
            n02006656 n02007558 n02009229 n02009912 n02011460 n02012849
            n02013706 n02017213 n02018207 n02018795 n02025239 n02027492
            n02028035 n02033041 n02037110 n02051845 n02056570 n02058221
            """)),
        ("n02087551", "hound", _wnids("""
            n02088094 n02088238 n02088364 n02088466 n02088632 n02089078
            n02089867 n02089973 n02090379 n02090622 n02090721 n02091032
            n02091134 n02091244 n02091467 n02091635 n02091831 n02092002
            n02092339
            """)),
        ("n02092468", "terrier", _wnids("""
            n02093256 n02093428 n02093647 n02093754 n02093859 n02093991
            n02094114 n02094258 n02094433 n02095314 n02095570 n02095889
            n02096051 n02096177 n02096294 n02096437 n02096585 n02097047
            n02097130 n02097209 n02097298 n02097474 n02097658 n02098105
            n02098286 n02098413
            """)),
        ("n02120997", "feline", _wnids("""
            n02123045 n02123159 n02123394 n02123597 n02124075 n02125311
            n02127052 n02128385 n02128757 n02128925 n02129165 n02129604
            n02130308
            """)),
        ("n02370806", "ungulate", _wnids("""
            n02389026 n02391049 n02395406 n02396427 n02397096 n02398521
            n02403003 n02408429 n02410509 n02412080 n02415577 n02417914
            n02422106 n02422699 n02423022 n02437312 n02437616
            """)),
        ("n02469914", "primate", _wnids("""
            n02480495 n02480855 n02481823 n02483362 n02483708 n02484975
            n02486261 n02486410 n02487347 n02488291 n02488702 n02489166
            n02490219 n02492035 n02492660 n02493509 n02493793 n02494079
            n02497673 n02500267
            """)),
        ("n02913152", "building", _wnids("""
            n02727426 n02793495 n02859443 n03028079 n03032252 n03457902
            n03529860 n03661043 n03781244 n03788195 n03877845 n03956157
            n04081281 n04346328
            """)),
        ("n03125870", "craft", _wnids("""
            n02687172 n02690373 n02692877 n02782093 n02951358 n02981792
            n03095699 n03344393 n03447447 n03662601 n03673027 n03947888
            n04147183 n04266014 n04273569 n04347754 n04483307 n04552348
            n04606251 n04612504
            """)),
        ("n03278248", "electronic equipment", _wnids("""
            n02979186 n02988304 n02992529 n03085013 n03187595 n03584254
            n03777754 n03782006 n03857828 n03902125 n04392985
            """)),
        ("n03297735", "establishment", _wnids("""
            n02776631 n02791270 n02871525 n02927161 n03089624 n03461385
            n04005630 n04200800 n04443257 n04462240
            """)),
        ("n03414162", "game equipment", _wnids("""
            n02799071 n02802426 n03134739 n03445777 n03598930 n03942813
            n04023962 n04118538 n04254680 n04409515 n04540053 n06785654
            """)),
        ("n03419014", "garment", _wnids("""
            n02667093 n02837789 n02865351 n02883205 n02892767 n02963159
            n03188531 n03325584 n03404251 n03534580 n03594734 n03595614
            n03617480 n03630383 n03710721 n03770439 n03866082 n03980874
            n04136333 n04325704 n04350905 n04370456 n04371430 n04479046
            n04591157
            """)),
        ("n03574816", "instrument", _wnids("""
            n02708093 n02749479 n02794156 n02841315 n02879718 n02950826
            n03196217 n03197337 n03467068 n03544143 n03692522 n03706229
            n03773504 n03841143 n03891332 n04008634 n04009552 n04044716
            n04086273 n04090263 n04118776 n04141975 n04317175 n04328186
            n04355338 n04356056 n04376876 n04548280
            """)),
        ("n03800933", "musical instrument", _wnids("""
            n02672831 n02676566 n02787622 n02804610 n02992211 n03017168
            n03110669 n03249569 n03272010 n03372029 n03394916 n03447721
            n03452741 n03494278 n03495258 n03720891 n03721384 n03838899
            n03840681 n03854065 n03884397 n04141076 n04311174 n04487394
            n04515003 n04536866
            """)),
        ("n04014297", "protective covering", _wnids("""
            n02825657 n02840245 n02843684 n02895154 n03000247 n03146219
            n03220513 n03347037 n03424325 n03527444 n03637318 n03657121
            n03788365 n03929855 n04141327 n04192698 n04229816 n04417672
            n04423845 n04435653 n04507155 n04523525 n04589890 n04590129
            """)),
        ("n04081844", "restraint", _wnids("""
            n02910353 n03075370 n03208938 n03476684 n03627232 n03803284
            n03804744 n03874599 n04127249 n04153751 n04162706
            """)),
        ("n04451818", "tool", _wnids("""
            n02951585 n03041632 n03109150 n03481172 n03498962 n03649909
            n03658185 n03954731 n03967562 n03970156 n04154565 n04208210
            """)),
    ),
    "val": (
        ("n02098550", "sporting dog", _wnids("""
            n02099267 n02099429 n02099601 n02099712 n02099849 n02100236
            n02100583 n02100735 n02100877 n02101006 n02101388 n02101556
            n02102040 n02102177 n02102318 n02102480 n02102973
            """)),
        ("n03257877", "durables", _wnids("""
            n03207941 n03259280 n03297495 n03483316 n03584829 n03761084
            n04070727 n04111531 n04442312 n04517823 n04542943 n04554684
            """)),
        ("n03405265", "furnishing", _wnids("""
            n02791124 n02804414 n02870880 n03016953 n03018349 n03125729
            n03131574 n03179701 n03201208 n03290653 n03337140 n03376595
            n03388549 n03742115 n03891251 n03998194 n04099969 n04344873
            n04380533 n04429376 n04447861 n04550184
            """)),
        ("n03699975", "machine", _wnids("""
            n02666196 n02977058 n03180011 n03485407 n03496892 n03642806
            n03832673 n04238763 n04243546 n04428191 n04525305 n06359193
            """)),
        ("n03738472", "mechanism", _wnids("""
            n02966193 n02974003 n03425413 n03532672 n03874293 n03944341
            n03992509 n04019541 n04040759 n04067472 n04371774 n04372370
            """)),
        ("n03791235", "motor vehicle", _wnids("""
            n02701002 n02704792 n02814533 n02930766 n03100240 n03345487
            n03417042 n03444034 n03445924 n03594945 n03670208 n03770679
            n03777568 n03785016 n03796401 n03930630 n03977966 n04037443
            n04252225 n04285008 n04461696 n04467665
            """)),
    ),
    "test": (
        ("n00020090", "substance", _wnids("""
            n03314780 n07565083 n07579787 n07583066 n07584110 n07590611
            n07613480 n07614500 n07615774 n07697313 n07697537 n07802026
            n07831146 n07836838 n07860988 n07873807 n07875152 n07880968
            n07892512 n07920052 n07930864 n07932039
            """)),
        ("n01473806", "aquatic vertebrate", _wnids("""
            n01440764 n01443537 n01484850 n01491361 n01494475 n01496331
            n01498041 n02514041 n02526121 n02536864 n02606052 n02607072
            n02640242 n02641379 n02643566 n02655020
            """)),
        ("n02103406", "working dog", _wnids("""
            n02104029 n02104365 n02105056 n02105162 n02105251 n02105412
            n02105505 n02105641 n02105855 n02106030 n02106166 n02106382
            n02106550 n02106662 n02107142 n02107312 n02107574 n02107683
            n02107908 n02108000 n02108089 n02108422 n02108551 n02108915
            n02109047 n02109525 n02109961 n02110063 n02110185 n02110627
            """)),
        ("n02159955", "insect", _wnids("""
            n02165105 n02165456 n02167151 n02168699 n02169497 n02172182
            n02174001 n02177972 n02190166 n02206856 n02219486 n02226429
            n02229544 n02231487 n02233338 n02236044 n02256656 n02259212
            n02264363 n02268443 n02268853 n02276258 n02277742 n02279972
            n02280649 n02281406 n02281787
            """)),
        ("n03839993", "obstruction", _wnids("""
            n02788148 n02894605 n03000134 n03160309 n03459775 n03930313
            n04239074 n04326547 n04501370 n04604644
            """)),
        ("n04531098", "vessel", _wnids("""
            n02795169 n02808440 n02815834 n02823428 n02909870 n02939185
            n03063599 n03063689 n03633091 n03786901 n03937543 n03950228
            n03983396 n04049303 n04398044 n04493381 n04522168 n04553703
            n04557648 n04560804 n04562935 n04579145 n04591713
            """)),
        ("n09287968", "geological formation", _wnids("""
            n09193705 n09246464 n09256479 n09288635 n09332890 n09399592
            n09421951 n09428293 n09468604 n09472597
            """)),
        ("n15046900", "solid", _wnids("""
            n07714571 n07714990 n07715103 n07716358 n07716906 n07717410
            n07717556 n07718472 n07718747 n07720875 n07730033 n07734744
            n07742313 n07745940 n07747607 n07749582 n07753113 n07753275
            n07753592 n07754684 n07760859 n07768694
            """)),
    ),
}

IMAGES = {s: f"{s}_images_png.pkl" for s in SPLIT_NAMES}
LABELS = {s: f"{s}_labels.pkl" for s in SPLIT_NAMES}
SYNSETS, CLASS_NAMES = "synsets.txt", "class_names.txt"

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Put the files of the tieredImageNet release (tiered-imagenet.tar of Ren "
    "et al., unpacked) in one folder: "
    + ", ".join(f"{IMAGES[s]}, {LABELS[s]}" for s in SPLIT_NAMES)
    + f", and optionally {SYNSETS} and {CLASS_NAMES} (to check the classes "
    "against the published split).")

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
    raise ValueError(f"tieredImageNet folder {os.fspath(folder)} does not "
                     f"exist. {MANUAL_DOWNLOAD_INSTRUCTIONS}")
  required = [*IMAGES.values(), *LABELS.values()]
  missing = [n for n in required if not (folder / n).is_file()]
  if missing:
    raise ValueError(f"tieredImageNet folder {os.fspath(folder)} lacks "
                     f"{', '.join(missing)}. {MANUAL_DOWNLOAD_INSTRUCTIONS}")
  names = required + [n for n in (SYNSETS, CLASS_NAMES)
                      if all((folder / m).is_file()
                             for m in (SYNSETS, CLASS_NAMES))]
  return {n: folder / n for n in names}


def _load_pickle(path: os.PathLike):
  with open(path, "rb") as f:
    return pickle.load(f, encoding="latin1")


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _name_to_wnids(files) -> Optional[Dict[str, List[str]]]:
  """{class name: wnids} from synsets.txt and class_names.txt, or None."""
  if SYNSETS not in files:
    return None
  read = lambda n: [l.strip() for l in files[n].read_text(
      encoding="utf-8").splitlines() if l.strip()]
  wnids, names = read(SYNSETS), read(CLASS_NAMES)
  if len(wnids) != len(names):
    raise ValueError(f"{SYNSETS} has {len(wnids)} lines but {CLASS_NAMES} "
                     f"has {len(names)}; they should pair line by line.")
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
    raise ValueError(f"A tieredImageNet image is {image.shape[:2]}; the "
                     "release's are 84x84.")
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
            "One example per class."),
        features=tfds.features.FeaturesDict({
            "images": tfds.features.Tensor(
                shape=(None, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8),
            "name": tfds.features.Text(),
            "wnid": tfds.features.Text(),
            "category": tfds.features.Text(),
        }),
        homepage="https://github.com/renmengye/few-shot-ssl-public",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    files = manual_files(dl_manager.manual_dir)
    wnids_of = _name_to_wnids(files)
    return {split: self._generate_examples(split, files, wnids_of)
            for split in SPLIT_NAMES}

  def _generate_examples(self, split, files,
                         wnids_of) -> Iterator[Tuple[str, dict]]:
    labels = _load_pickle(files[LABELS[split]])
    labels = {_text(k): v for k, v in labels.items()}
    specific = np.asarray(labels["label_specific"]).reshape(-1)
    general = np.asarray(labels["label_general"]).reshape(-1)
    class_names = [_text(n) for n in labels["label_specific_str"]]
    category_names = [_text(n) for n in labels["label_general_str"]]
    pngs = _load_pickle(files[IMAGES[split]])
    if len(pngs) != len(specific):
      raise ValueError(
          f"{IMAGES[split]} holds {len(pngs)} images but {LABELS[split]} "
          f"labels {len(specific)}.")
    category_of = {w: name for _, name, wnids in CATEGORIES[split]
                   for w in wnids}
    order = np.argsort(specific, kind="stable")  # rows grouped by class
    bounds = np.searchsorted(specific[order],
                             np.arange(len(class_names) + 1))
    for label, name in enumerate(class_names):
      rows = order[bounds[label]:bounds[label + 1]]
      if not len(rows):
        continue
      wnid = self._wnid(name, split, wnids_of, category_of)
      if wnid:
        category = category_of[wnid]
      else:
        values, counts = np.unique(general[rows], return_counts=True)
        index = int(values[np.argmax(counts)])
        category = (category_names[index]
                    if 0 <= index < len(category_names) else "")
      yield f"{label:04d}", {
          "images": np.stack([_decode(pngs[i]) for i in rows]),
          "name": name, "wnid": wnid, "category": category}

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
          "tieredImageNet split. Check which file is which.")
    return inside[0]
