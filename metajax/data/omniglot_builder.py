"""A TFDS builder for the official Omniglot archives, one character a record.

`MetajaxOmniglot` has one builder config per official zip of the Omniglot
release (Lake, Salakhutdinov & Tenenbaum, 2015):

| config | archive | alphabets | characters |
| --- | --- | --- | --- |
| background | images_background.zip | 30 | 964 |
| evaluation | images_evaluation.zip | 20 | 659 |
| small1 | images_background_small1.zip | 5 | 136 |
| small2 | images_background_small2.zip | 5 | 156 |

Each config has a single split, "train", with one example per character:

  * "images": uint8 [n, 105, 105, 1], ink 255 on background 0 (the PNGs are
    ink 0 on white; the builder inverts them), one image per drawer, ordered
    by file name (that is, by drawer); n is 20 throughout the release.
  * "alphabet": e.g. "Greek"; "character": e.g. "character03" (the folder
    names of the archive); "drawers": int32 [n], the drawer ids of the file
    names (`<image id>_<drawer>.png`).

One record per character (instead of one per image) keeps reading fast: the
reader parses 1623 records for the whole release rather than 32460.

`_split_generators` takes the zip from the manual folder
(`tfds.download.DownloadConfig(manual_dir=...)`) when that folder holds it,
and checks its sha256 against the official one; otherwise it downloads it
with `dl_manager.download` from the Omniglot GitHub repository, which checks
the same sha256 through `url_infos`. The zip is read in place with `zipfile`
(TFDS's extraction, which needs TensorFlow, is not used) and the PNGs are
decoded with PIL. Prepare with `file_format="array_record"` and read back with
`tfds.data_source`: neither needs TensorFlow. Since both routes check the same
sha256, data prepared from a download serves a folder and the other way round.
"""

import dataclasses
import hashlib
import io
import os
import zipfile
from typing import Dict, Iterator, List, NamedTuple, Tuple

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

IMAGE_SIZE = 105  # side of the original Omniglot images, in pixels

_BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"


class Archive(NamedTuple):
  """One official zip of the Omniglot release.

  Attributes:
    filename: the zip's file name, e.g. "images_background.zip".
    size: its size in bytes.
    sha256: its sha256, hex.
    num_characters: the characters it holds.
  """

  filename: str
  size: int
  sha256: str
  num_characters: int

  @property
  def url(self) -> str:
    """The zip's download address."""
    return _BASE_URL + self.filename


# In the order `metajax.data.omniglot` prefers when a character is in two.
ARCHIVES: Dict[str, Archive] = {
  "background": Archive(
    "images_background.zip",
    9464212,
    "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
    964,
  ),
  "evaluation": Archive(
    "images_evaluation.zip",
    6462886,
    "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
    659,
  ),
  "small1": Archive(
    "images_background_small1.zip",
    1319022,
    "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    136,
  ),
  "small2": Archive(
    "images_background_small2.zip",
    1580917,
    "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
    156,
  ),
}

_CITATION = """\
@article{lake2015human,
  title={Human-level concept learning through probabilistic program induction},
  author={Lake, Brenden M and Salakhutdinov, Ruslan and Tenenbaum, Joshua B},
  journal={Science},
  volume={350},
  number={6266},
  pages={1332--1338},
  year={2015},
}
"""


def character_files(path: os.PathLike) -> Dict[Tuple[str, str], List[str]]:
  """Lists the PNGs of an Omniglot zip by character, without decoding any.

  Args:
    path: an Omniglot zip (`<top>/<Alphabet>/characterNN/<id>_<drawer>.png`).

  Returns:
    {(alphabet, character): sorted member names of its PNGs}.

  Raises:
    ValueError: the zip holds no PNG in that layout.
  """
  chars: Dict[Tuple[str, str], List[str]] = {}
  with zipfile.ZipFile(path) as zf:
    for name in zf.namelist():
      parts = name.split("/")
      if len(parts) < 3 or not parts[-1].endswith(".png"):
        continue
      chars.setdefault((parts[-3], parts[-2]), []).append(name)
  if not chars:
    raise ValueError(
      f"{os.fspath(path)} holds no Omniglot images "
      "(<Alphabet>/characterNN/<id>_<drawer>.png)."
    )
  return {k: sorted(v) for k, v in sorted(chars.items())}


def _sha256(path: os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


@dataclasses.dataclass
class MetajaxOmniglotConfig(tfds.core.BuilderConfig):
  """A config of `MetajaxOmniglot`: one official archive."""

  archive: str = ""  # a key of ARCHIVES


class MetajaxOmniglot(tfds.core.GeneratorBasedBuilder):
  """Omniglot characters from the official zips, one record per character."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "One record per character; ink 255 on 0."}
  BUILDER_CONFIGS = [
    MetajaxOmniglotConfig(
      name=key,
      archive=key,
      description=f"{a.filename}: {a.num_characters} characters.",
    )
    for key, a in ARCHIVES.items()
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "Offline, put the official Omniglot zips (any of "
    + ", ".join(a.filename for a in ARCHIVES.values())
    + f") in the manual folder; they are at {_BASE_URL}."
  )

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls) -> Dict[str, tfds.download.checksums.UrlInfo]:
    """Sizes and sha256 of the official zips, checked on download."""
    return {
      a.url: tfds.download.checksums.UrlInfo(
        size=a.size, checksum=a.sha256, filename=a.filename
      )
      for a in ARCHIVES.values()
    }

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "Omniglot (Lake et al., 2015): handwritten characters of 50 "
        "alphabets, 20 drawers each. One example per character; images "
        "are uint8 with ink 255 on background 0."
      ),
      features=tfds.features.FeaturesDict(
        {
          "images": tfds.features.Tensor(
            shape=(None, IMAGE_SIZE, IMAGE_SIZE, 1),
            dtype=np.uint8,
            encoding=tfds.features.Encoding.ZLIB,
          ),
          "alphabet": tfds.features.Text(),
          "character": tfds.features.Text(),
          "drawers": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        }
      ),
      homepage="https://github.com/brendenlake/omniglot",
      citation=_CITATION,
    )

  def _archive_path(self, dl_manager) -> os.PathLike:
    """The zip of this config: from the manual folder, else downloaded."""
    archive = ARCHIVES[self.builder_config.archive]
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError:  # no manual folder, or an empty one
      manual_dir = None
    if manual_dir is not None and (manual_dir / archive.filename).exists():
      path = manual_dir / archive.filename
      sha256 = _sha256(path)
      if sha256 != archive.sha256:
        raise ValueError(
          f"{os.fspath(path)} is not the official {archive.filename}: its "
          f"sha256 is {sha256}, expected {archive.sha256}."
        )
      return path
    return dl_manager.download(archive.url)

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(self._archive_path(dl_manager))}

  def _generate_examples(self, path) -> Iterator[Tuple[str, dict]]:
    chars = character_files(path)
    with zipfile.ZipFile(path) as zf:
      for (alphabet, character), names in chars.items():
        images = np.empty((len(names), IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)
        for i, name in enumerate(names):
          with Image.open(io.BytesIO(zf.read(name))) as im:
            images[i, ..., 0] = 255 - np.asarray(im.convert("L"))
        drawers = [
          int(os.path.splitext(n)[0].rsplit("_", 1)[-1]) for n in names
        ]
        yield (
          f"{alphabet}/{character}",
          {
            "images": images,
            "alphabet": alphabet,
            "character": character,
            "drawers": np.asarray(drawers, np.int32),
          },
        )
