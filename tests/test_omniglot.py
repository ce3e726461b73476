"""Tests of metajax.data.omniglot on the two small official Omniglot zips."""

import hashlib
import importlib.util
import io
import os
import pathlib
import sys
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from metajax.data import omniglot
from metajax.data import omniglot_builder
from metajax.data import omniglot_images
from metajax.data import sources

_SMALL = ("images_background_small1.zip", "images_background_small2.zip")
_NUM_CHARS = 242  # distinct characters of the two small zips
_NUM_ALPHABETS = 8


def _find_data_dir():
  env = os.environ.get(sources.DATA_DIR_ENV)
  candidates = [pathlib.Path(env)] if env else []
  candidates.append(
    pathlib.Path(__file__).resolve().parents[2] / "shared/data/omniglot"
  )
  for folder in candidates:
    if all((folder / name).is_file() for name in _SMALL):
      return folder
  return None


DATA_DIR = _find_data_dir()
pytestmark = pytest.mark.skipif(
  DATA_DIR is None,
  reason=(
    f"Omniglot small zips not found in ${sources.DATA_DIR_ENV} nor in "
    "../shared/data/omniglot beside the repository."
  ),
)


def _character(name):
  """'Greek/character03/rot090' -> 'Greek/character03'."""
  return "/".join(name.split("/")[:2])


def _characters(split):
  return {_character(n) for n in split.names}


class _Counter:
  """Counts calls of MetajaxOmniglot._generate_examples (preparations)."""

  def __init__(self):
    self.calls = 0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """Two loads into one fresh cache; counts the builder's preparations."""
  cache = tmp_path_factory.mktemp("omniglot_cache")
  counter = _Counter()
  original = omniglot_builder.MetajaxOmniglot._generate_examples

  def counting(self, path):
    counter.calls += 1
    return original(self, path)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(omniglot_builder.MetajaxOmniglot, "_generate_examples", counting)
    first = omniglot.load(data_dir=DATA_DIR, split="seeded", cache_dir=cache)
    calls_first = counter.calls
    files = sorted(cache.rglob("*.array_record*"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    plain = omniglot.load(
      data_dir=DATA_DIR, split="seeded", cache_dir=cache, rotations=False
    )
    calls_second = counter.calls - calls_first
  return dict(
    cache=cache,
    rotated=first,
    plain=plain,
    files=files,
    mtimes=mtimes,
    calls_first=calls_first,
    calls_second=calls_second,
  )


def test_counts_without_rotations(prepared):
  plain = prepared["plain"]
  assert set(plain) == {"train", "val", "test"}
  names = [n for s in plain.values() for n in s.names]
  assert len(names) == len(set(names)) == _NUM_CHARS
  assert [plain[k].num_classes for k in ("train", "val", "test")] == [
    145,
    24,
    73,
  ]  # 60% / 10% / rest of 242
  assert len({n.split("/")[0] for n in names}) == _NUM_ALPHABETS
  for split in plain.values():
    assert split.images.shape[1:] == (20, 28, 28, 1)
    assert split.images.dtype == np.uint8
    assert split.min_examples() == 20


def test_rotations_are_new_classes(prepared):
  rotated, plain = prepared["rotated"], prepared["plain"]
  for key in ("train", "val", "test"):
    r, p = rotated[key], plain[key]
    assert r.num_classes == 4 * p.num_classes
    assert r.images.shape == (4 * p.num_classes, 20, 28, 28, 1)
    assert _characters(r) == set(p.names)
    assert r.names[:4] == tuple(
      f"{p.names[0]}/rot{d:03d}" for d in (0, 90, 180, 270)
    )
    np.testing.assert_array_equal(r.images[0], p.images[0])
    for k in (1, 2, 3):
      np.testing.assert_array_equal(
        r.images[k], np.rot90(p.images[0], k, axes=(1, 2))
      )


def test_images_have_bright_ink(prepared):
  for split in prepared["rotated"].values():
    x = split.images
    assert x.dtype == np.uint8 and x.shape[2:] == (28, 28, 1)
    assert x.mean() < 60  # mostly background 0
    assert x.max() == 255 and x.min() == 0
    assert np.median(x) == 0
    # every image has some ink
    assert (x.reshape(x.shape[0] * x.shape[1], -1).max(axis=1) > 128).all()


def test_splits_are_disjoint_by_character(prepared):
  for loaded in (prepared["rotated"], prepared["plain"]):
    chars = {k: _characters(v) for k, v in loaded.items()}
    assert not chars["train"] & chars["val"]
    assert not chars["train"] & chars["test"]
    assert not chars["val"] & chars["test"]
    assert sum(len(c) for c in chars.values()) == _NUM_CHARS


def test_greek_and_latin_are_deduplicated(prepared):
  names = [n for s in prepared["plain"].values() for n in s.names]
  listed = {}
  for zip_name in _SMALL:
    for alphabet, char in omniglot_builder.character_files(DATA_DIR / zip_name):
      listed.setdefault(alphabet, set()).add(char)
  for alphabet in ("Greek", "Latin"):
    ours = [n for n in names if n.startswith(alphabet + "/")]
    assert len(ours) == len(set(ours)) == len(listed[alphabet]) > 0


def test_second_load_reuses_prepared_files(prepared):
  assert prepared["calls_first"] == 2  # small1 and small2
  assert prepared["calls_second"] == 0
  files = sorted(prepared["cache"].rglob("*.array_record*"))
  assert files == prepared["files"] and len(files) == 2
  assert [f.stat().st_mtime_ns for f in files] == prepared["mtimes"]


_LOAD_AND_HASH = """
import hashlib, sys
from metajax.data import omniglot
splits = omniglot.load(data_dir=sys.argv[1], split="seeded", cache_dir=sys.argv[2])
digest = hashlib.sha256()
for name in ("train", "val", "test"):
  digest.update("|".join(splits[name].names).encode())
  digest.update(splits[name].images.tobytes())
print(digest.hexdigest())
"""


def test_concurrent_first_loads_prepare_once(tmp_path):
  """Processes loading into one fresh cache at once (runs started side by
  side) all succeed and read the same data: without the lock all but one
  failed renaming their copy onto the first one's (FileExistsError)."""
  import subprocess  # pylint: disable=import-outside-toplevel

  root = pathlib.Path(__file__).resolve().parents[1]
  env = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    JAX_PLATFORMS="cpu",
  )
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", _LOAD_AND_HASH, str(DATA_DIR), str(tmp_path)],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
    )
    for _ in range(3)
  ]
  results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
  for _, err, code in results:
    assert code == 0, err[-2000:]
  assert len({out.split()[-1] for out, _, _ in results}) == 1  # the hash
  assert len(sorted(tmp_path.rglob("*.array_record*"))) == 2  # one copy each


def test_seed_determines_split(prepared):
  again = omniglot.load(
    data_dir=DATA_DIR,
    split="seeded",
    cache_dir=prepared["cache"],
    rotations=False,
  )
  other = omniglot.load(
    data_dir=DATA_DIR,
    split="seeded",
    seed=1,
    cache_dir=prepared["cache"],
    rotations=False,
  )
  for key in ("train", "val", "test"):
    assert again[key].names == prepared["plain"][key].names
    np.testing.assert_array_equal(
      again[key].images, prepared["plain"][key].images
    )
  assert other["train"].names != prepared["plain"]["train"].names
  assert other["test"].num_classes == prepared["plain"]["test"].num_classes


def test_env_var_sizes_and_counts(prepared, monkeypatch):
  monkeypatch.setenv(sources.DATA_DIR_ENV, os.fspath(DATA_DIR))
  small = omniglot.load(
    split="seeded",
    image_size=14,
    rotations=False,
    num_train=200,
    num_val=0,
    cache_dir=prepared["cache"],
  )
  assert [small[k].num_classes for k in ("train", "val", "test")] == [
    200,
    0,
    42,
  ]
  assert small["val"].images.shape == (0, 20, 14, 14, 1)
  assert small["train"].images.shape[1:] == (20, 14, 14, 1)


def test_resize_is_pils_lanczos():
  with zipfile.ZipFile(DATA_DIR / _SMALL[0]) as zf:
    names = [n for n in zf.namelist() if n.endswith(".png")][:5]
    raw = np.stack(
      [
        255 - np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("L"))
        for n in names
      ]
    )
  ours = omniglot_images.resize(
    raw[..., None], omniglot_images.resize_matrix(28)
  )
  for x, y in zip(raw, ours):
    pil = Image.fromarray(x.astype(np.float32)).resize(
      (28, 28), Image.Resampling.LANCZOS
    )
    want = np.rint(np.clip(np.asarray(pil), 0, 255))
    assert np.abs(y[..., 0].astype(int) - want).max() <= 1


@pytest.mark.parametrize("split", ["vinyals", "lake"])
def test_full_release_splits_reject_small_data(split, tmp_path):
  with pytest.raises(ValueError) as info:
    omniglot.load(data_dir=DATA_DIR, split=split, cache_dir=tmp_path)
  message = str(info.value)
  assert "images_evaluation.zip" in message and "seeded" in message
  assert str(_NUM_CHARS) in message
  assert not any(tmp_path.iterdir())  # raised before preparing anything


def test_missing_or_empty_folder(tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(ValueError, match="nowhere.*does not exist") as info:
    omniglot.load(data_dir=missing, split="seeded", cache_dir=tmp_path)
  assert "images_background.zip" in str(info.value)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="holds none") as info:
    omniglot.load(data_dir=empty, split="seeded", cache_dir=tmp_path)
  assert all(n in str(info.value) for n in _SMALL)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(split="omniglot"), "vinyals, lake, seeded"),
    (dict(image_size=0), "image_size"),
    (dict(image_size=2.5), "image_size"),
    (dict(num_train=200, num_val=42), "less than the 242"),
    (dict(num_train=242), "less than the 242"),
    (dict(num_val=-1), "num_val"),
    (dict(split="lake", num_train=10), "num_train must be None"),
  ],
)
def test_bad_arguments(kwargs, match, tmp_path):
  kwargs = dict(
    dict(split="seeded", data_dir=DATA_DIR, cache_dir=tmp_path), **kwargs
  )
  with pytest.raises(ValueError, match=match):
    omniglot.load(**kwargs)
  assert not any(tmp_path.iterdir())


def test_checksums_match_the_official_small_zips():
  infos = omniglot_builder.MetajaxOmniglot.url_infos
  for key in ("small1", "small2"):
    archive = omniglot_builder.ARCHIVES[key]
    data = (DATA_DIR / archive.filename).read_bytes()
    assert infos[archive.url].size == len(data) == archive.size
    assert infos[archive.url].checksum == hashlib.sha256(data).hexdigest()


def test_wrong_zip_in_folder_is_rejected(tmp_path):
  folder = tmp_path / "data"
  folder.mkdir()
  png = io.BytesIO()
  Image.new("1", (105, 105), 1).save(png, format="PNG")
  with zipfile.ZipFile(folder / _SMALL[0], "w") as zf:
    for char in ("character01", "character02"):
      zf.writestr(
        f"images_background_small1/Greek/{char}/0394_01.png", png.getvalue()
      )
  with pytest.raises(ValueError, match="sha256"):
    omniglot.load(
      data_dir=folder,
      split="seeded",
      num_train=1,
      num_val=0,
      cache_dir=tmp_path / "cache",
    )


def test_download_path_without_network(tmp_path, monkeypatch):
  """No folder: the builder downloads through tfds (mocked to local zips)."""
  monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
  # Stand-ins: small1 for the background zip, small2 for the evaluation zip.
  local = {
    omniglot_builder.ARCHIVES["background"].url: DATA_DIR / _SMALL[0],
    omniglot_builder.ARCHIVES["evaluation"].url: DATA_DIR / _SMALL[1],
  }
  requested = []

  def download(self, url_or_urls):
    del self
    requested.append(url_or_urls)
    return local[url_or_urls]

  monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
  cache = tmp_path / "cache"
  lake = omniglot.load(
    split="lake", num_val=10, rotations=False, cache_dir=cache
  )
  assert sorted(requested) == sorted(local)
  assert all(
    u.startswith("https://github.com/brendenlake/omniglot/") for u in requested
  )
  # Lake: train + val from the "background" zip, test from "evaluation".
  with_small1 = {
    f"{a}/{c}"
    for a, c in omniglot_builder.character_files(
      local[omniglot_builder.ARCHIVES["background"].url]
    )
  }
  assert _characters(lake["train"]) | _characters(lake["val"]) == with_small1
  assert lake["val"].num_classes == 10
  assert not _characters(lake["test"]) & with_small1
  total = sum(s.num_classes for s in lake.values())
  assert total == _NUM_CHARS
  # Vinyals on 242 characters: a clear error once the count is known.
  with pytest.raises(ValueError, match="found 242 characters.*seeded"):
    omniglot.load(split="vinyals", cache_dir=cache)
  assert len(requested) == 2  # prepared once, not downloaded again


def test_no_tensorflow_needed(prepared):
  """The loads above prepared and read the data with TensorFlow absent."""
  del prepared
  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("TensorFlow is installed here; CI runs these without it.")
  assert "tensorflow" not in sys.modules
  with pytest.raises(ImportError):
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
