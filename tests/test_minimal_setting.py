"""The Omniglot challenge's minimal setting: its split, its within-alphabet
test episodes, the affine warps of its training images, and queries
classified on their own (support-statistics batch norm)."""

import io
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from experiments.configs import minimal_omniglot
from metajax import from_config
from metajax import models
from metajax import runs
from metajax.checks import ConfigError
from metajax.data import augment
from metajax.data import from_config as data_from_config
from metajax.data import omniglot
from metajax.data.episodes import EpisodeSampler
from metajax.data.sources import ClassImages
from metajax.learners import protonet
from metajax.models import layers
from metajax.types import Episode
from tests.conftest import omniglot_dir

DATA_DIR = omniglot_dir()
SMALL = {
  "small1": "images_background_small1.zip",
  "small2": "images_background_small2.zip",
}


def _zip_characters(name):
  with zipfile.ZipFile(DATA_DIR / SMALL[name]) as zf:
    return {
      tuple(n.split("/")[1:3]) for n in zf.namelist() if n.endswith(".png")
    }


@pytest.fixture(scope="module")
def minimal(tmp_path_factory, omniglot_data_dir):
  cache = tmp_path_factory.mktemp("cache")
  return {
    bg: omniglot.load(
      data_dir=omniglot_data_dir,
      split="minimal",
      background=bg,
      image_size=14,
      cache_dir=cache,
    )
    for bg in ("small1", "small2")
  }


def _characters(classes):
  return {tuple(n.split("/")[:2]) for n in classes.names}


@pytest.mark.parametrize(
  "background,other", [("small1", "small2"), ("small2", "small1")]
)
def test_minimal_split(minimal, background, other):
  """Train + val are exactly one zip's characters; test is the other zip's
  characters of the alphabets the first lacks, unrotated."""
  splits = minimal[background]
  train, val = _characters(splits["train"]), _characters(splits["val"])
  own = _zip_characters(background)
  assert train | val == own and not train & val
  assert len(val) == round(0.1 * len(own))
  seen = {a for a, _ in own}
  want = {k for k in _zip_characters(other) if k[0] not in seen}
  assert _characters(splits["test"]) == want
  assert {a for a, _ in want} == {
    "small1": {"Japanese_(katakana)", "Sanskrit", "Tagalog"},
    "small2": {"Balinese", "Early_Aramaic", "Korean"},
  }[background]
  assert splits["train"].num_classes == 4 * len(train)  # rotations
  assert splits["test"].num_classes == len(want)  # never rotated
  assert not any("/rot" in n for n in splits["test"].names)


def test_minimal_split_arguments(tmp_path):
  with pytest.raises(
    ValueError, match="background is an option of split='minimal' only"
  ):
    omniglot.load(
      data_dir=DATA_DIR, split="seeded", background="small1", cache_dir=tmp_path
    )
  with pytest.raises(ValueError, match="background must be one of"):
    omniglot.load(
      data_dir=DATA_DIR,
      split="minimal",
      background="small3",
      cache_dir=tmp_path,
    )
  with pytest.raises(ValueError, match="num_train must be None"):
    omniglot.load(
      data_dir=DATA_DIR, split="minimal", num_train=10, cache_dir=tmp_path
    )
  with pytest.raises(
    ValueError,
    match="num_val=136 must be less than the 136 characters of small1",
  ):
    omniglot.load(
      data_dir=DATA_DIR, split="minimal", num_val=136, cache_dir=tmp_path
    )
  one = tmp_path / "one_zip"
  one.mkdir()
  (one / SMALL["small1"]).symlink_to(DATA_DIR / SMALL["small1"])
  with pytest.raises(ValueError, match="needs both small background sets"):
    omniglot.load(data_dir=one, split="minimal", cache_dir=tmp_path)
  assert not list(tmp_path.rglob("*.array_record*"))  # nothing prepared


def _episode_alphabets(classes, episode):
  """The alphabet of each support image's class (found by its pixels)."""
  flat = classes.images.reshape(
    classes.num_classes, -1, classes.images[0, 0].size
  )
  out = []
  for x in episode.support_x:
    c = int(np.argwhere((flat == x.reshape(-1)).all(-1))[0, 0])
    out.append(classes.names[c].split("/")[0])
  return out


def test_within_alphabet_test_episodes(minimal):
  """A 20-way within-alphabet sampler never mixes alphabets and skips
  Tagalog (17 characters)."""
  test = minimal["small1"]["test"]
  sampler = EpisodeSampler(
    test, ways=20, shots=1, queries=1, groups=test.name_groups()
  )
  rng = np.random.default_rng(0)
  drawn = set()
  for _ in range(30):
    alphabets = set(_episode_alphabets(test, sampler.sample(rng)))
    assert len(alphabets) == 1
    drawn |= alphabets
  assert drawn == {"Japanese_(katakana)", "Sanskrit"}


def test_warp_is_scipys_affine_transform():
  rng = np.random.default_rng(0)
  x = rng.random((3, 20, 24, 1)).astype(np.float32)
  angle = 0.3
  forward = (
    np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    @ np.array([[1.0, 0.2], [0.0, 1.0]])
    * np.array([1.1, 0.9])
  )
  shift = np.array([1.5, -2.25])
  ours = augment.warp(
    x, np.repeat(forward[None], 3, 0), np.repeat(shift[None], 3, 0)
  )
  inverse, centre = np.linalg.inv(forward), np.array([9.5, 11.5])
  want = np.stack(
    [
      ndimage.affine_transform(
        one[..., 0],
        inverse,
        offset=centre - inverse @ (centre + shift),
        order=1,
        mode="grid-constant",
        cval=0.0,
      )
      for one in x
    ]
  )
  np.testing.assert_allclose(ours[..., 0], want, atol=1e-5)


def test_warped_source():
  rng = np.random.default_rng(0)
  images = (rng.random((6, 4, 12, 12, 1)) * 255).astype(np.uint8)
  sampler = EpisodeSampler(
    ClassImages(images, [f"a/{i}" for i in range(6)]),
    ways=3,
    shots=1,
    queries=2,
  )
  plain = sampler.sample_batch(np.random.default_rng(1), 2)
  still = augment.Warped(
    sampler, rotation=0, shear=0, scale=(1, 1), translate=0
  ).sample_batch(np.random.default_rng(1), 2)
  np.testing.assert_array_equal(still.support_x, plain.support_x)
  warped = augment.Warped(sampler).sample_batch(np.random.default_rng(1), 2)
  np.testing.assert_array_equal(warped.query_y, plain.query_y)
  assert warped.support_x.dtype == np.uint8
  assert warped.support_x.shape == plain.support_x.shape
  assert not np.array_equal(warped.support_x, plain.support_x)
  assert augment.Warped(sampler).ways == 3
  for bad, match in (
    (dict(scale=(1.2, 0.8)), "scale must be"),
    (dict(rotation=-1), "rotation"),
  ):
    with pytest.raises(ValueError, match=match):
      augment.Warped(sampler, **bad)


def test_support_statistics_batch_norm():
  x = np.random.default_rng(0).normal(size=(7, 3, 3, 4)).astype(np.float32)
  ref = x[:3]
  y = layers.batch_stat_norm(x, stats_rows=3)
  mean = ref.mean((0, 1, 2))
  var = ((ref - mean) ** 2).mean((0, 1, 2))
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
  np.testing.assert_allclose(
    layers.batch_stat_norm(x[:3], stats_rows=3),
    layers.batch_stat_norm(x[:3]),
    atol=1e-6,
  )
  # Conv4 passes stats_rows to each of its batch norms: the rows after the
  # first 3 are each embedded as if alone after them.
  net = models.Conv4(None, filters=2, conv_impl="xla")
  images = np.random.default_rng(1).random((6, 8, 8, 1)).astype(np.float32)
  params = net.init(jax.random.PRNGKey(0), images)
  apply = jax.jit(net.apply, static_argnames="stats_rows")
  every = apply(params, images, stats_rows=3)
  for i in range(3, 6):
    alone = apply(
      params, np.concatenate([images[:3], images[i : i + 1]]), stats_rows=3
    )
    np.testing.assert_allclose(alone[3], every[i], atol=1e-5)
  assert not np.allclose(apply(params, images)[3], every[3], atol=1e-3)


class _DenseNorm(nn.Module):
  """A dense layer and batch-statistics batch norm (compiles in a blink)."""

  @nn.compact
  def __call__(self, x, stats_rows=None):
    x = nn.Dense(8)(x.reshape(len(x), -1))
    return layers.BatchStatNorm()(x, stats_rows)


@pytest.mark.parametrize(
  "query_norm,independent", [("support", True), ("batch", False)]
)
def test_queries_classified_on_their_own(query_norm, independent):
  """With query_norm="support" a query's logits do not depend on the other
  queries (with "batch" they do, which shows the test can fail)."""
  learner = protonet(_DenseNorm(), ways=3, query_norm=query_norm)
  key = jax.random.PRNGKey(1)
  support_x = jax.random.uniform(key, (3, 14, 14, 1))
  query_x = jax.random.uniform(jax.random.PRNGKey(2), (4, 14, 14, 1))
  support_y = jnp.arange(3)
  params = learner.init(
    key, Episode(support_x, support_y, query_x, jnp.zeros(4, jnp.int32))
  )
  state = jax.jit(learner.adapt)(params, (support_x, support_y), key)
  predict = jax.jit(learner.predict)
  logits = predict(params, state, query_x)
  changed = query_x.at[1:].set(1.0 - query_x[1:])
  first = predict(params, state, changed)[0]
  assert np.allclose(first, logits[0], atol=1e-5) == independent
  alone = predict(params, state, query_x[:1])[0]
  assert np.allclose(alone, logits[0], atol=1e-5) == independent


def test_support_mode_prototypes_are_the_support_sets_own():
  """query_norm="support" embeds support and queries in one pass: its
  prototypes must be the class means of the support set embedded alone (as
  "batch" computes them), its queries normalized by the support's
  statistics."""
  embedding = _DenseNorm()
  key = jax.random.PRNGKey(3)
  support_x = jax.random.uniform(key, (6, 14, 14, 1))
  support_y = jnp.array([0, 1, 2, 0, 1, 2])
  query_x = jax.random.uniform(jax.random.PRNGKey(4), (5, 14, 14, 1))
  episode = Episode(support_x, support_y, query_x, jnp.zeros(5, jnp.int32))
  batch, support = (
    protonet(embedding, ways=3, query_norm=q) for q in ("batch", "support")
  )
  params = batch.init(key, episode)
  prototypes = batch.adapt(params, (support_x, support_y), key)
  both = jnp.concatenate([support_x, query_x])
  q = embedding.apply({"params": params["embed"]}, both, stats_rows=6)[6:]
  expected = -((q[:, None, :] - prototypes[None]) ** 2).sum(-1)
  state = support.adapt(params, (support_x, support_y), key)
  np.testing.assert_allclose(
    support.predict(params, state, query_x), expected, rtol=1e-5, atol=1e-5
  )


def test_config_plumbing(monkeypatch, omniglot_data_dir):
  """The config's within-alphabet test episodes and warped training."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  config = from_config.validate(minimal_omniglot.get_config("smoke"))
  sources = from_config.build_sources(config)
  assert isinstance(sources["train"], augment.Warped)
  assert sources["test"].ways == 5
  assert sources["test"]._groups is not None  # pylint: disable=protected-access
  assert sources["val"]._groups is None  # pylint: disable=protected-access
  config.warp_kwargs.scale = (2.0, 1.0)
  with pytest.raises(ConfigError, match="config.warp_kwargs: scale must be"):
    from_config.build_sources(config)
  config.warp_kwargs = {"spin": 1.0}
  with pytest.raises(ConfigError, match="config.warp_kwargs: .*spin"):
    from_config.build_sources(config)


@pytest.mark.parametrize("within", [False, True])
def test_training_episodes_within_alphabets(
  monkeypatch, omniglot_data_dir, within
):
  """`train_within_groups` draws each training episode from one alphabet
  (its rotated characters included); without it, episodes mix them."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  config = minimal_omniglot.get_config("smoke")
  config.warp = False
  config.train_within_groups = within
  config = from_config.validate(config)
  train = from_config.build_sources(config)["train"]
  rng = np.random.default_rng(0)
  counts = [
    len(set(_episode_alphabets(train.classes, train.sample(rng))))
    for _ in range(20)
  ]
  if within:
    assert counts == [1] * 20
  else:
    assert max(counts) > 1
  seen = {
    _episode_alphabets(train.classes, train.sample(rng))[0] for _ in range(40)
  }
  assert len(seen) > 1  # every alphabet can be drawn, not just one


def test_training_episodes_within_alphabets_errors(
  monkeypatch, omniglot_data_dir
):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  config = minimal_omniglot.get_config("smoke")
  config.train_within_groups = True
  config.ways = 200  # more than any alphabet's characters x 4 rotations
  config = from_config.validate(config)
  with pytest.raises(ConfigError, match="train split.*largest group"):
    from_config.build_sources(config)
  config.ways = 6
  with pytest.raises(ConfigError, match="train_within_groups.*mini-batches"):
    data_from_config.sources(config, train_on="class_batches")


def test_a_trained_run_on_a_users_drawings(
  tmp_path, monkeypatch, omniglot_data_dir
):
  """load_run + prepare_images (105x105 PNGs, at the run's image size) +
  predict: a query that is one of the support drawings is nearest its own
  prototype (distance 0, because queries take the support's statistics),
  and each query's logits are those it gets alone."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  config = minimal_omniglot.get_config("smoke")
  runs.train_and_evaluate(config, str(tmp_path / "run"))
  run = runs.load_run(str(tmp_path / "run"))
  with zipfile.ZipFile(DATA_DIR / SMALL["small2"]) as zf:
    names = sorted(
      n for n in zf.namelist() if "/Sanskrit/" in n and n.endswith(".png")
    )
    by_character = {}
    for n in names:
      by_character.setdefault(n.split("/")[2], []).append(n)
    drawings = [
      [Image.open(io.BytesIO(zf.read(n))) for n in files[:2]]
      for files in list(by_character.values())[:5]
    ]
  assert drawings[0][0].size == (105, 105)
  support_x = omniglot.prepare_images(
    [d[0] for d in drawings], image_size=run.config.image_size
  )
  query_x = omniglot.prepare_images(
    [d[1] for d in drawings] + [drawings[3][0]],
    image_size=run.config.image_size,
  )
  logits = runs.predict(run, support_x, np.arange(5), query_x)
  assert logits.shape == (6, 5)
  assert np.argmax(logits[5]) == 3 and abs(logits[5, 3]) < 1e-3
  for i in (0, 5):
    alone = runs.predict(run, support_x, np.arange(5), query_x[i : i + 1])
    np.testing.assert_allclose(alone[0], logits[i], atol=1e-4)
