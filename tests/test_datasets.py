"""CIFAR-FS, FC100, miniImageNet, tieredImageNet: loaders, sampler, smoke runs.

No download: cifar100 is mocked with `tfds.testing.mock_data`, and the
ImageNet sets are tiny fake releases written into tmp_path (a few real wnids
of each published split, a handful of images per class). Every image carries
its class in channel 0 and its index in channel 1, so the tests can check
that images land in the right class.
"""

import contextlib
import importlib.util
import io
import pickle
from unittest import mock

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from experiments.configs import maml_cifar_fs
from experiments.configs import protonet_cifar_fs
from metajax import from_config
from metajax import runs
from metajax.data import augment
from metajax.data import cifar
from metajax.data import imagenet_subsets
from metajax.data.episodes import EpisodeSampler

CIFAR_TRAIN_PER_CLASS, CIFAR_TEST_PER_CLASS = 4, 2

# Published splits, written here independently of the code under test.
MINI = {  # (a few of) Ravi & Larochelle's wnids
  "train": ["n01532829", "n01558993", "n01704323", "n01749939", "n01770081"],
  "val": ["n01855672", "n02091244", "n02114548", "n02138441", "n02174001"],
  "test": ["n01930112", "n01981276", "n02099601", "n02110063", "n02110341"],
}
TIERED = {  # (category wnid, category name, class wnids) of Ren et al.
  "train": [
    ("n01524359", "passerine", ["n01530575", "n01531178", "n01532829"]),
    ("n01726692", "snake", ["n01728572", "n01728920"]),
  ],
  "val": [
    ("n02098550", "sporting dog", ["n02099267", "n02099429", "n02099601"]),
    ("n03791235", "motor vehicle", ["n02701002", "n02704792"]),
  ],
  "test": [
    ("n02159955", "insect", ["n02165105", "n02165456"]),
    ("n04531098", "vessel", ["n02795169", "n02808440", "n02815834"]),
  ],
}
FC100_TEST = {
  "beaver",
  "dolphin",
  "otter",
  "seal",
  "whale",
  "bee",
  "beetle",
  "butterfly",
  "caterpillar",
  "cockroach",
  "fox",
  "porcupine",
  "possum",
  "raccoon",
  "skunk",
  "baby",
  "boy",
  "girl",
  "man",
  "woman",
}


# ---------------------------------------------------------------- fake data


def _fake_cifar100(
  self, split, decoders=None, deserialize_method=None, **kwargs
):
  """cifar100's records: label i % 100; channel 0 = label, 2 = 0/1 split."""
  del self, decoders, deserialize_method, kwargs
  per_class = (
    CIFAR_TRAIN_PER_CLASS if split == "train" else CIFAR_TEST_PER_CLASS
  )
  records = []
  for i in range(100 * per_class):
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = i % 100
    image[..., 1] = i // 100
    image[..., 2] = split == "test"
    records.append(
      {
        "image": image,
        "label": i % 100,
        "coarse_label": 0,
        "id": f"{split}_{i}",
      }
    )
  return records


@contextlib.contextmanager
def _mock_cifar():
  """tensorflow-datasets' mock of cifar100 (which stands in for preparing
  it, so the loader's TensorFlow check does not apply)."""
  with (
    tfds.testing.mock_data(as_data_source_fn=_fake_cifar100),
    mock.patch.object(cifar, "_check_can_prepare", lambda *args: None),
  ):
    yield


def _marked(class_index, n, size=84):
  x = np.zeros((n, size, size, 3), np.uint8)
  x[..., 0] = class_index
  x[..., 1] = np.arange(n)[:, None, None]
  x[..., 2] = 7
  return x


def _png(image):
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="PNG")
  return np.frombuffer(buf.getvalue(), np.uint8)


def _write_mini_pickles(folder, splits=MINI, per_class=4):
  folder.mkdir(parents=True, exist_ok=True)
  for split, wnids in splits.items():
    images = np.concatenate(
      [_marked(10 * i, per_class) for i in range(len(wnids))]
    )
    class_dict = {
      w: list(range(i * per_class, (i + 1) * per_class))
      for i, w in enumerate(wnids)
    }
    with open(folder / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
      pickle.dump({"image_data": images, "class_dict": class_dict}, f)
  return folder


def _write_tiered(folder):
  """Ren et al.'s layout; class k of a split has 3 + k % 2 images."""
  folder.mkdir(parents=True, exist_ok=True)
  synsets, class_names = [], []
  for split, categories in TIERED.items():
    pngs, specific, general, names = [], [], [], []
    for c, (_, _, wnids) in enumerate(categories):
      for wnid in wnids:
        label = len(names)
        names.append(f"class of {wnid}")
        synsets.append(wnid)
        class_names.append(names[-1])
        for image in _marked(10 * label, 3 + label % 2):
          pngs.append(_png(image))
          specific.append(label)
          general.append(c)
    with open(folder / f"{split}_images_png.pkl", "wb") as f:
      pickle.dump(pngs, f)
    with open(folder / f"{split}_labels.pkl", "wb") as f:
      pickle.dump(
        {
          "label_specific": np.array(specific),
          "label_general": np.array(general),
          "label_specific_str": names,
          "label_general_str": [n for _, n, _ in categories],
        },
        f,
      )
  (folder / "synsets.txt").write_text("\n".join(synsets) + "\n")
  (folder / "class_names.txt").write_text("\n".join(class_names) + "\n")
  return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Fake releases and one cache (`<xdg>/metajax`) that every test shares."""
  root = tmp_path_factory.mktemp("datasets")
  xdg = root / "xdg"
  out = dict(
    xdg=xdg,
    cache=xdg / "metajax",
    mini=_write_mini_pickles(root / "mini"),
    tiered=_write_tiered(root / "tiered"),
  )
  with _mock_cifar():
    out["cifar_fs"] = cifar.load("cifar_fs", data_dir=root / "tfds")
    out["fc100"] = cifar.load("fc100", data_dir=root / "tfds")
  out["mini_imagenet"] = imagenet_subsets.load(
    "mini_imagenet", data_dir=out["mini"], cache_dir=out["cache"]
  )
  out["tiered_imagenet"] = imagenet_subsets.load(
    "tiered_imagenet", data_dir=out["tiered"], cache_dir=out["cache"]
  )
  return out


# ------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize(
  "name,counts", [("cifar_fs", (64, 16, 20)), ("fc100", (60, 20, 20))]
)
def test_cifar_class_counts_disjoint_shapes(data, name, counts):
  splits = data[name]
  assert (
    tuple(splits[s].num_classes for s in ("train", "val", "test")) == counts
  )
  names = [set(splits[s].names) for s in ("train", "val", "test")]
  assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
  assert len(names[0] | names[1] | names[2]) == 100
  per_class = CIFAR_TRAIN_PER_CLASS + CIFAR_TEST_PER_CLASS
  for s in splits.values():
    assert s.images.dtype == np.uint8
    assert s.images.shape[1:] == (per_class, 32, 32, 3)
    # Each class pools cifar100's train and test images.
    assert set(np.unique(s.images[..., 2])) == {0, 1}


def test_cifar_classes_hold_their_own_images(data):
  test = data["cifar_fs"]["test"]
  whale = test.names.index("whale")  # CIFAR-100 fine label 95
  assert (test.images[whale][..., 0] == 95).all()
  assert {"whale", "poppy", "rocket", "woman"} <= set(test.names)
  assert {"apple", "tank"} <= set(data["cifar_fs"]["train"].names)
  assert set(data["fc100"]["test"].names) == FC100_TEST
  # FC100 splits by superclass: no carnivore outside val.
  assert {"bear", "leopard", "lion", "tiger", "wolf"} <= set(
    data["fc100"]["val"].names
  )
  apple = data["fc100"]["train"].names.index("apple")  # fine label 0
  assert (data["fc100"]["train"].images[apple][..., 0] == 0).all()


def test_cifar_resizes_on_request():
  with _mock_cifar():
    splits = cifar.load("fc100", image_size=20)
  assert splits["val"].images.shape[2:] == (20, 20, 3)
  with pytest.raises(ValueError, match="Unknown CIFAR few-shot dataset"):
    cifar.load("cifar10")


@pytest.mark.parametrize("found", [False, True])
def test_cifar_without_tensorflow_says_how_to_prepare(
  tmp_path, monkeypatch, found
):
  """Without TensorFlow: the error comes before any download; and if
  TensorFlow is found but fails to import while preparing, the same error."""
  calls = []

  def needs_tensorflow(self, *args, **kwargs):
    del self, args, kwargs
    calls.append(1)
    raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

  monkeypatch.setattr(
    tfds.core.DatasetBuilder, "download_and_prepare", needs_tensorflow
  )
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util,
    "find_spec",
    lambda name, *a: (
      (object() if found else None)
      if name == "tensorflow"
      else find_spec(name, *a)
    ),
  )
  with pytest.raises(
    RuntimeError,
    match=(
      f"cifar100 is not prepared in {tmp_path}, and tensorflow-datasets' "
      "cifar builder needs TensorFlow to prepare it: `pip install "
      "tensorflow-cpu`"
    ),
  ):
    cifar.load("cifar_fs", data_dir=tmp_path)
  assert calls == ([1] if found else [])


# ---------------------------------------------------------------- ImageNet


def test_mini_imagenet_from_pickles(data):
  splits = data["mini_imagenet"]
  for split, wnids in MINI.items():
    assert splits[split].names == tuple(sorted(wnids))
    assert splits[split].images.shape == (5, 4, 84, 84, 3)
    assert splits[split].images.dtype == np.uint8
    for name, images in zip(splits[split].names, splits[split].images):
      np.testing.assert_array_equal(images, _marked(10 * wnids.index(name), 4))


def test_mini_imagenet_from_csv_and_images(tmp_path):
  folder = tmp_path / "mini_csv"
  (folder / "images").mkdir(parents=True)
  splits = {
    "train": MINI["train"][:2],
    "val": MINI["val"][:2],
    "test": MINI["test"][:2],
  }
  for split, wnids in splits.items():
    rows = ["filename,label"]
    for i, wnid in enumerate(wnids):
      for j in range(3):
        name = f"{wnid}{j:08d}.png"
        Image.fromarray(np.full((100, 90, 3), 40 * i + j, np.uint8)).save(
          folder / "images" / name
        )
        rows.append(f"{name},{wnid}")
    (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
  loaded = imagenet_subsets.load(
    "mini_imagenet", data_dir=folder, cache_dir=tmp_path / "cache"
  )
  for split, wnids in splits.items():
    assert loaded[split].names == tuple(sorted(wnids))
    x = loaded[split].images
    assert x.shape == (2, 3, 84, 84, 3) and x.dtype == np.uint8
    first = wnids.index(loaded[split].names[0])
    assert (x[0, 2] == 40 * first + 2).all()  # resized from 100x90, flat


def test_tiered_imagenet_from_release(data):
  splits = data["tiered_imagenet"]
  categories = {}
  for split, cats in TIERED.items():
    expected = sorted(f"{name}/{w}" for _, name, wnids in cats for w in wnids)
    assert list(splits[split].names) == expected
    categories[split] = {n.split("/")[0] for n in splits[split].names}
    sizes = sorted(len(x) for x in splits[split].images)
    assert sizes == sorted(3 + k % 2 for k in range(len(expected)))
    for x in splits[split].images:
      assert x.shape[1:] == (84, 84, 3) and x.dtype == np.uint8
      assert (x[..., 2] == 7).all()  # the PNGs' pixels, decoded as RGB
  assert not categories["train"] & categories["val"]
  assert not categories["train"] & categories["test"]
  assert not categories["val"] & categories["test"]


def test_tiered_imagenet_without_synset_lists(tmp_path):
  folder = _write_tiered(tmp_path / "tiered")
  (folder / "synsets.txt").unlink()
  loaded = imagenet_subsets.load(
    "tiered_imagenet", data_dir=folder, cache_dir=tmp_path / "cache"
  )
  # Classes keep the release's names, categories its label_general_str.
  assert set(loaded["val"].names) == {
    "sporting dog/class of n02099267",
    "sporting dog/class of n02099429",
    "sporting dog/class of n02099601",
    "motor vehicle/class of n02701002",
    "motor vehicle/class of n02704792",
  }


def test_missing_manual_download_says_what_goes_where(tmp_path, monkeypatch):
  monkeypatch.delenv("METAJAX_DATA_DIR", raising=False)
  cache = tmp_path / "cache"
  with pytest.raises(
    ValueError,
    match=(
      r"miniImageNet is not prepared .* set data_dir .* "
      r"\$METAJAX_DATA_DIR/mini_imagenet.*mini-imagenet-cache-train\.pkl"
    ),
  ):
    imagenet_subsets.load("mini_imagenet", cache_dir=cache)
  folder = tmp_path / "partial"
  _write_mini_pickles(folder, {"train": MINI["train"]})
  with pytest.raises(
    ValueError,
    match=(
      f"miniImageNet folder {folder} lacks mini-imagenet-cache-val.pkl, "
      "mini-imagenet-cache-test.pkl"
    ),
  ):
    imagenet_subsets.load("mini_imagenet", data_dir=folder, cache_dir=cache)
  monkeypatch.setenv("METAJAX_DATA_DIR", str(tmp_path / "data"))
  with pytest.raises(
    ValueError,
    match=(
      f"tieredImageNet folder {tmp_path / 'data' / 'tiered_imagenet'} does "
      "not exist.*train_images_png.pkl, train_labels.pkl"
    ),
  ):
    imagenet_subsets.load("tiered_imagenet", cache_dir=cache)
  assert not cache.exists() or not any(cache.rglob("*.array_record*"))


def test_files_of_the_wrong_split_are_refused(tmp_path):
  folder = _write_mini_pickles(
    tmp_path / "swapped",
    {"train": MINI["val"], "val": MINI["train"], "test": MINI["test"]},
  )
  with pytest.raises(ValueError, match="not train classes of Ravi"):
    imagenet_subsets.load(
      "mini_imagenet", data_dir=folder, cache_dir=tmp_path / "cache"
    )


# ------------------------------------------------ sampler, augmentation, runs


@pytest.mark.parametrize(
  "name,size",
  [
    ("cifar_fs", 32),
    ("fc100", 32),
    ("mini_imagenet", 84),
    ("tiered_imagenet", 84),
  ],
)
def test_sampler_on_each_dataset(data, name, size):
  for split in ("train", "val", "test"):
    sampler = EpisodeSampler(data[name][split], ways=4, shots=1, queries=2)
    batch = sampler.sample_batch(np.random.default_rng(0), 2)
    assert batch.support_x.shape == (2, 4, size, size, 3)
    assert batch.query_x.shape == (2, 8, size, size, 3)
    assert batch.support_x.dtype == np.uint8
    np.testing.assert_array_equal(batch.query_y[0], np.repeat(np.arange(4), 2))
    # A label is one class: its support and query share channel 0.
    for t in range(2):
      for k in range(4):
        assert (
          batch.query_x[t, 2 * k, 0, 0, 0] == batch.support_x[t, k, 0, 0, 0]
        )


def test_crop_and_flip():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (3, 40, 6, 5, 2), np.uint8)
  np.testing.assert_array_equal(
    augment.crop_and_flip(x, rng, pad=0, flip=False), x
  )
  flipped = augment.crop_and_flip(x, rng, pad=0, flip=True).reshape(
    120, 6, 5, 2
  )
  plain, mirror = x.reshape(120, 6, 5, 2), x.reshape(120, 6, 5, 2)[:, :, ::-1]
  same = [(f == p).all() for f, p in zip(flipped, plain)]
  mirrored = [(f == m).all() for f, m in zip(flipped, mirror)]
  assert all(s or m for s, m in zip(same, mirrored))
  assert 20 < sum(mirrored) < 100
  cropped = augment.crop_and_flip(x, rng, pad=2, flip=False).reshape(
    120, 6, 5, 2
  )
  padded = np.pad(plain, ((0, 0), (2, 2), (2, 2), (0, 0)))
  offsets = set()
  for c, p in zip(cropped, padded):
    hits = [
      (i, j)
      for i in range(5)
      for j in range(5)
      if (p[i : i + 6, j : j + 5] == c).all()
    ]
    assert hits
    offsets.add(hits[0])
  assert len(offsets) > 10  # the crops move


def test_augmented_source_keeps_labels(data):
  sampler = EpisodeSampler(
    data["cifar_fs"]["train"], ways=3, shots=2, queries=1
  )
  wrapped = augment.Augmented(sampler, pad=4)
  plain = sampler.sample_batch(np.random.default_rng(1), 2)
  batch = wrapped.sample_batch(np.random.default_rng(1), 2)
  np.testing.assert_array_equal(batch.support_y, plain.support_y)
  assert batch.support_x.shape == plain.support_x.shape
  assert batch.support_x.dtype == np.uint8
  assert not np.array_equal(batch.support_x, plain.support_x)
  assert wrapped.ways == 3
  with pytest.raises(ValueError, match="pad must be an integer >= 0"):
    augment.Augmented(sampler, pad=-1)


# One smoke run per dataset; MAML (second order) once, ProtoNets (cheaper to
# compile) on the others; two runs are saved, loaded and applied to new images.
@pytest.mark.parametrize(
  "name,config_module,overrides,save",
  [
    ("cifar_fs", maml_cifar_fs, {}, True),
    ("fc100", protonet_cifar_fs, dict(augment=True), False),
    ("mini_imagenet", protonet_cifar_fs, dict(image_size=84), True),
    (
      "tiered_imagenet",
      protonet_cifar_fs,
      dict(image_size=None, augment=True),
      False,
    ),
  ],
  ids=[
    "cifar_fs-maml",
    "fc100-protonet",
    "mini_imagenet-protonet",
    "tiered_imagenet-protonet",
  ],
)
def test_smoke_run_per_dataset(
  data, tmp_path, monkeypatch, name, config_module, overrides, save
):
  monkeypatch.setenv("XDG_CACHE_HOME", str(data["xdg"]))
  config = config_module.get_config("smoke")
  config.dataset = name
  folder = {"mini_imagenet": "mini", "tiered_imagenet": "tiered"}.get(name)
  config.data_dir = str(data[folder]) if folder else ""
  config.update(overrides)
  config.num_steps, config.eval_episodes = 2, 2
  config.ways = 5  # the fake ImageNet splits have 5 classes
  context = _mock_cifar() if folder is None else contextlib.nullcontext()
  with context:
    results = runs.train_and_evaluate(config, str(tmp_path) if save else None)
  assert results["metric"] == "accuracy" and 0 <= results["mean"] <= 1
  assert results["episodes"] == 2
  assert results["config"]["dataset"] == name
  if not save:
    return
  run = runs.load_run(str(tmp_path))
  size = 32 if folder is None else 84
  x = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), np.uint8)
  logits = runs.predict(run, x, np.arange(5), x[:2])
  assert logits.shape == (2, 5) and np.isfinite(logits).all()
  with pytest.raises(ValueError, match="support_x has shape"):
    runs.predict(run, x[..., :1], np.arange(5), x[:2])


@pytest.mark.parametrize(
  "field,value,match",
  [
    (
      "dataset",
      "cifar100",
      "config.dataset must be one of .*'cifar_fs', "
      "'fc100', 'mini_imagenet', 'tiered_imagenet'",
    ),
    ("augment", "yes", "config.augment must be a bool"),
    ("augment_pad", -2, "config.augment_pad must be None or an integer >= 0"),
    ("image_size", 0, "config.image_size must be None or an integer >= 1"),
  ],
)
def test_bad_dataset_fields_fail_in_validate(field, value, match):
  config = ml_collections.ConfigDict(
    maml_cifar_fs.get_config("smoke").to_dict(), type_safe=False
  )
  config[field] = value
  with pytest.raises(ValueError, match=match):
    from_config.validate(config)


def test_missing_data_fails_before_writing(tmp_path, monkeypatch):
  config = maml_cifar_fs.get_config("smoke")
  config.dataset = "mini_imagenet"
  config.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(
    ValueError, match="mini_imagenet data folder .* does not exist"
  ):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  monkeypatch.delenv("METAJAX_DATA_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  config.dataset, config.data_dir = "tiered_imagenet", ""
  with pytest.raises(
    ValueError,
    match="tieredImageNet is not prepared in "
    f"{tmp_path / 'xdg' / 'metajax'} and no folder",
  ):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
