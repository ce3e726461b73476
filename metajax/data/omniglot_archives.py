"""Which Omniglot zips a split reads, and how many characters each part takes.

What `metajax.data.omniglot.load` finds and checks before it decodes any zip:
the folder of zips (`data_folder`), the archives, that is the configs of
`omniglot_builder.MetajaxOmniglot`, a split reads (`choose_archives`), the
characters the zips list, each kept from its first archive (`dedupe`,
`listed_characters`), and the sizes of meta-train and meta-val
(`split_sizes`, `minimal_num_val`). Every error about the data a split needs
is raised here, from the zips' listings alone. `metajax.data.omniglot`'s
docstring says which zips each split reads.
"""

import os
import pathlib
from typing import Dict, Optional, Sequence, Tuple, Union

from metajax.data import omniglot_builder
from metajax.data.sources import DATA_DIR_ENV

FULL = ("background", "evaluation")  # the full release: 1623 characters
SMALL = ("small1", "small2")  # the small background sets

_VINYALS_TRAIN = 1200
_DEFAULT_VAL = 100
_SEEDED_TRAIN_FRACTION = 0.6
_SEEDED_VAL_FRACTION = 0.1

PathLike = Union[str, os.PathLike]
Key = Tuple[str, str]  # (alphabet, character)


def _expected_files() -> str:
  return ", ".join(a.filename for a in omniglot_builder.ARCHIVES.values())


def _where(folder: Optional[pathlib.Path]) -> str:
  """Where the zips are, for error messages."""
  return os.fspath(folder) if folder is not None else "the downloaded zips"


def data_folder(data_dir: Optional[PathLike]) -> Optional[pathlib.Path]:
  """The folder of zips to read, or None to download; checks it exists.

  Args:
    data_dir: `load`'s argument; None: `$METAJAX_DATA_DIR`, and None when
      that is unset or empty too.

  Raises:
    ValueError: the folder does not exist or holds none of the zips.
  """
  if data_dir is None:
    data_dir = os.environ.get(DATA_DIR_ENV) or None
    origin = f"${DATA_DIR_ENV}"
  else:
    origin = "data_dir"
  if data_dir is None:
    return None
  folder = pathlib.Path(data_dir).expanduser()
  if not folder.is_dir():
    raise ValueError(
      f"Omniglot folder {os.fspath(folder)} (from {origin}) does not exist; "
      f"it should hold any of {_expected_files()}."
    )
  if not any(
    (folder / a.filename).is_file() for a in omniglot_builder.ARCHIVES.values()
  ):
    raise ValueError(
      f"Omniglot folder {os.fspath(folder)} (from {origin}) holds none of "
      f"the expected files {_expected_files()}."
    )
  return folder


def choose_archives(
  split: str, folder: Optional[pathlib.Path]
) -> Tuple[str, ...]:
  """The configs of `MetajaxOmniglot` (archives) that `split` reads.

  Args:
    split: one of `omniglot.SPLITS`.
    folder: from `data_folder`; None: downloaded (the full release, or for
      "minimal" the small sets).

  Raises:
    ValueError: the folder lacks the zips the split needs.
  """
  if folder is None:  # downloaded
    return SMALL if split == "minimal" else FULL
  present = tuple(
    a
    for a, info in omniglot_builder.ARCHIVES.items()
    if (folder / info.filename).is_file()
  )
  full = tuple(a for a in FULL if a in present)
  if split == "seeded":
    return full or tuple(a for a in SMALL if a in present)
  if split == "minimal":
    if all(a in present for a in SMALL):
      return SMALL
    need = " and ".join(omniglot_builder.ARCHIVES[a].filename for a in SMALL)
    raise ValueError(
      f"split='minimal' needs both small background sets, "
      f"{need}, in {os.fspath(folder)}."
    )
  if full == FULL:
    return full
  names = [omniglot_builder.ARCHIVES[a].filename for a in present]
  found = len(listed_characters(folder, present))
  need = " and ".join(omniglot_builder.ARCHIVES[a].filename for a in FULL)
  raise ValueError(
    f"split={split!r} needs the full Omniglot release ({need}, 1623 "
    f"characters), but {os.fspath(folder)} holds only {', '.join(names)}: "
    f"{found} characters. Use split='seeded' to split the characters that "
    "are available, or add the full zips to the folder."
  )


def dedupe(chars_by_archive: Dict[str, Dict[Key, list]]) -> Dict[Key, str]:
  """{key: first archive holding it}, archives in `ARCHIVES` order."""
  origin: Dict[Key, str] = {}
  for archive in omniglot_builder.ARCHIVES:
    for key in chars_by_archive.get(archive, ()):
      origin.setdefault(key, archive)
  return origin


def listed_characters(
  folder: pathlib.Path, archives: Sequence[str]
) -> Dict[Key, str]:
  """`dedupe` of the characters the zips of `archives` in `folder` list.

  Reads the zips' listings only (`omniglot_builder.character_files`), no
  image.
  """
  return dedupe(
    {
      a: omniglot_builder.character_files(
        folder / omniglot_builder.ARCHIVES[a].filename
      )
      for a in archives
    }
  )


def split_sizes(
  split: str,
  counts: Dict[str, int],
  num_train,
  num_val,
  folder: Optional[pathlib.Path],
) -> Tuple[int, int]:
  """(num_train, num_val) characters of `split`; checks they leave a test.

  Args:
    split: "vinyals", "lake" or "seeded" (see `omniglot.load`).
    counts: {archive: its characters, once each}.
    num_train: `load`'s argument, None for the split's default.
    num_val: `load`'s argument, None for the split's default.
    folder: where the zips are (None: downloaded), for the messages.

  Raises:
    ValueError: sizes that leave no meta-train ("lake") or meta-test
      character, or "vinyals" on fewer characters than the full release's.
  """
  total = sum(counts.values())
  where = _where(folder)
  if split == "lake":
    pool, pool_name = counts.get("background", 0), "background characters"
    num_val = _DEFAULT_VAL if num_val is None else num_val
    if num_val >= pool:
      raise ValueError(
        f"num_val={num_val} must be less than the {pool} {pool_name} of "
        f"split='lake' (in {where})."
      )
    return pool - num_val, num_val
  if split == "vinyals":
    if total < _VINYALS_TRAIN + 1:
      raise ValueError(
        f"split='vinyals' needs the full Omniglot release (1623 "
        f"characters); found {total} characters in {where}. Use "
        "split='seeded' to split the characters that are available."
      )
    num_train = _VINYALS_TRAIN if num_train is None else num_train
    num_val = _DEFAULT_VAL if num_val is None else num_val
  else:
    if num_train is None:
      num_train = max(1, int(round(_SEEDED_TRAIN_FRACTION * total)))
    if num_val is None:
      num_val = int(round(_SEEDED_VAL_FRACTION * total))
  if num_train + num_val >= total:
    raise ValueError(
      f"num_train + num_val = {num_train} + {num_val} must be less than the "
      f"{total} characters available for split={split!r} (in {where}), so "
      "that meta-test is not empty."
    )
  return num_train, num_val


def minimal_num_val(
  num_characters: int,
  num_val: Optional[int],
  background: str,
  folder: Optional[pathlib.Path],
) -> int:
  """The meta-val characters of split="minimal"; checks they leave a train.

  Args:
    num_characters: the characters of the `background` small set.
    num_val: `load`'s argument; None: 10% of them, rounded.
    background: "small1" or "small2", for the message.
    folder: where the zips are (None: downloaded), for the message.

  Raises:
    ValueError: `num_val` leaves no meta-train character.
  """
  n = num_characters
  val = int(round(_SEEDED_VAL_FRACTION * n)) if num_val is None else num_val
  if val >= n:
    raise ValueError(
      f"num_val={val} must be less than the {n} characters "
      f"of {background} (in {_where(folder)})."
    )
  return val
