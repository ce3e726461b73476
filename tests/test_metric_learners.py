"""Prototypical Networks, the Baselines and their place in the trainer."""

import importlib
import json
import os
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import protonet_omniglot
from metajax import from_config
from metajax import runs
from metajax.data.episodes import ClassBatchSampler
from metajax.data.sources import ClassImages
from metajax.learners.baseline import baseline, baseline_pp, fit_head, init_head
from metajax.learners.protonet import class_means, protonet, squared_distances
from metajax.types import Episode
from tests.conftest import REPO
from tests.test_family import check_meta_training, tiny_episode


class Flatten(nn.Module):
  """A parameter-free embedding: the flattened input."""

  @nn.compact
  def __call__(self, x):
    return x.reshape(x.shape[0], -1)


def float_episode(ways=3, shots=2, queries=2, dim=4, seed=0):
  rng = np.random.default_rng(seed)
  return Episode(
    rng.standard_normal((ways * shots, dim)).astype(np.float32),
    np.repeat(np.arange(ways, dtype=np.int32), shots),
    rng.standard_normal((ways * queries, dim)).astype(np.float32),
    np.repeat(np.arange(ways, dtype=np.int32), queries),
  )


def test_class_means_and_distances_against_numpy():
  rng = np.random.default_rng(1)
  emb = rng.standard_normal((7, 5)).astype(np.float32)
  labels = np.array([2, 0, 1, 2, 0, 0, 1])
  expected = np.stack([emb[labels == c].mean(0) for c in range(3)])
  np.testing.assert_allclose(class_means(emb, labels, 3), expected, rtol=1e-6)
  y = rng.standard_normal((3, 5)).astype(np.float32)
  brute = ((emb[:, None, :] - y[None]) ** 2).sum(-1)
  np.testing.assert_allclose(
    squared_distances(emb, y), brute, rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_protonet_logits_against_numpy(distance):
  ep = float_episode()
  learner = protonet(Flatten(), ways=3, distance=distance, scale=7.0)
  params = learner.init(jax.random.key(0), ep)
  protos = learner.adapt(params, ep.support, None)
  logits = np.asarray(learner.predict(params, protos, ep.query_x))
  p = np.stack([ep.support_x[ep.support_y == c].mean(0) for c in range(3)])
  q = ep.query_x
  if distance == "euclidean":
    expected = -((q[:, None] - p[None]) ** 2).sum(-1)
  else:
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
    expected = 7.0 * unit(q) @ unit(p).T
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_protonet_trains_with_more_ways_than_it_tests():
  train_learner = protonet(Flatten(), ways=5)
  test_learner = protonet(Flatten(), ways=2)
  ep5, ep2 = float_episode(ways=5), float_episode(ways=2, seed=3)
  params = train_learner.init(jax.random.key(0), ep5)
  for learner, ep, ways in ((train_learner, ep5, 5), (test_learner, ep2, 2)):
    logits = learner.predict(
      params, learner.adapt(params, ep.support, None), ep.query_x
    )
    chex.assert_shape(logits, (ep.query_x.shape[0], ways))


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
def test_head_fit_separates_linearly_separable_features(classifier):
  rng = np.random.default_rng(0)
  centers = 3.0 * np.eye(4, dtype=np.float32)[:3]  # 3 classes, 4 features
  labels = np.repeat(np.arange(3, dtype=np.int32), 5)
  feats = centers[labels] + 0.3 * rng.standard_normal((15, 4)).astype(
    np.float32
  )
  head = init_head(jax.random.key(0), 4, 3, classifier, scale=10.0)
  from metajax.learners.baseline import head_logits  # pylint: disable=g-import-not-at-top

  before = np.mean(
    np.argmax(head_logits(head, feats, classifier), -1) == labels
  )
  fitted = fit_head(
    head, feats, labels, classifier=classifier, opt=optax.adam(5e-2), steps=100
  )
  after = np.mean(
    np.argmax(head_logits(fitted, feats, classifier), -1) == labels
  )
  assert after == 1.0 and before < 1.0
  if classifier == "cosine":  # the scale is kept, not fit.
    assert float(fitted["scale"]) == 10.0


def test_head_fit_from_zeros_stays_in_the_support_span():
  """A head fit moves the kernel only within the span of the support
  features: from zeros nothing lies outside it; from a random start the
  part outside it stays (only weight decay shrinks it)."""
  from metajax.learners.baseline import support_head  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  feats = np.zeros((3, 6), np.float32)
  feats[:, :3] = 2.0 * np.eye(3) + 0.1 * rng.standard_normal((3, 3))
  labels = np.arange(3, dtype=np.int32)
  outside = slice(3, 6)  # directions no support feature has
  opt = optax.adam(5e-2)
  for init in ("zeros", "random"):
    head = support_head(jax.random.key(0), feats, labels, 3, "linear", init)
    fitted = fit_head(
      head, feats, labels, classifier="linear", opt=opt, steps=50
    )
    np.testing.assert_array_equal(
      fitted["kernel"][outside], head["kernel"][outside]
    )
  assert np.abs(head["kernel"][outside]).max() > 0.1  # the random start's


def test_prototype_head_starts_at_the_nearest_class_mean():
  from metajax.learners.baseline import head_logits, support_head  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(1)
  feats = rng.standard_normal((6, 5)).astype(np.float32)
  labels = np.array([0, 0, 1, 1, 2, 2], np.int32)
  queries = rng.standard_normal((9, 5)).astype(np.float32)
  head = support_head(None, feats, labels, 3, "cosine", "prototypes", 7.0)
  means = np.stack([feats[labels == c].mean(0) for c in range(3)])
  unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
  np.testing.assert_allclose(
    head_logits(head, queries, "cosine"),
    7.0 * unit(queries) @ unit(means).T,
    rtol=1e-5,
    atol=1e-5,
  )


@pytest.mark.parametrize("classifier", ["linear", "cosine"])
def test_baseline_head_default_start_needs_no_key(classifier):
  ep = float_episode()
  learner = baseline(
    nn.Dense(6), num_classes=4, ways=3, finetune_steps=5, classifier=classifier
  )
  params = learner.init(jax.random.key(0), ep)
  a, b = (learner.adapt(params, ep.support, jax.random.key(k)) for k in (1, 2))
  chex.assert_trees_all_equal(a, b)
  noisy = baseline(
    nn.Dense(6),
    num_classes=4,
    ways=3,
    finetune_steps=5,
    classifier=classifier,
    head_init="random",
  )
  a, b = (noisy.adapt(params, ep.support, jax.random.key(k)) for k in (1, 2))
  assert not np.allclose(a["head"]["kernel"], b["head"]["kernel"])


def test_baseline_adapt_freezes_the_embedding():
  learner = baseline(nn.Dense(6), num_classes=4, ways=3, finetune_steps=5)
  ep = float_episode()
  params = learner.init(jax.random.key(0), ep)
  chex.assert_shape(params["head"]["kernel"], (6, 4))

  def query_loss(p):
    head = learner.adapt(p, ep.support, jax.random.key(1))
    return learner.loss(learner.predict(p, head, ep.query_x), ep.query_y)

  def via_adapt_only(p):  # the query features are frozen here
    head = learner.adapt(p, ep.support, jax.random.key(1))
    return jnp.sum(head["head"]["kernel"])

  assert float(optax.tree.norm(jax.grad(query_loss)(params)["embed"])) > 0
  assert float(optax.tree.norm(jax.grad(via_adapt_only)(params)["embed"])) == 0


def test_entropy_against_numpy():
  from metajax.learners.baseline import entropy  # pylint: disable=g-import-not-at-top

  logits = np.array([[0.0, 0.0], [2.0, -1.0]], np.float32)
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = np.mean(-(p * np.log(p)).sum(-1))
  np.testing.assert_allclose(entropy(logits), expected, rtol=1e-6)


def test_transductive_fine_tuning_lowers_query_entropy():
  from metajax.learners.baseline import entropy  # pylint: disable=g-import-not-at-top

  ep = float_episode(ways=3, shots=2, queries=4, dim=5)
  kwargs = dict(num_classes=4, ways=3, finetune_steps=3)
  plain = baseline(nn.Dense(6), **kwargs)
  trans = baseline(
    nn.Dense(6),
    transductive_steps=30,
    transductive_opt=optax.adam(1e-2),
    **kwargs,
  )
  params = plain.init(jax.random.key(0), ep)
  key = jax.random.key(1)
  state = trans.adapt(params, ep.support, key)
  np.testing.assert_array_equal(state["support"][0], ep.support_x)
  chex.assert_trees_all_equal(
    state["head"], plain.adapt(params, ep.support, key)["head"]
  )
  before = plain.predict(
    params, plain.adapt(params, ep.support, key), ep.query_x
  )
  after = trans.predict(params, state, ep.query_x)
  assert float(entropy(after)) < 0.75 * float(entropy(before))
  # The query entropy is the difference: without it the queries' logits
  # differ from both.
  no_entropy = baseline(
    nn.Dense(6),
    transductive_steps=30,
    entropy_weight=0.0,
    transductive_opt=optax.adam(1e-2),
    **kwargs,
  )
  plain_ft = no_entropy.predict(
    params, no_entropy.adapt(params, ep.support, key), ep.query_x
  )
  assert float(entropy(after)) < float(entropy(plain_ft))


def class_images(num_classes=6, per_class=5, size=10, dense=True):
  # Class c's images are all the constant c, so labels can be checked.
  images = [
    np.full((per_class, size, size, 1), c, np.uint8) for c in range(num_classes)
  ]
  return ClassImages(
    np.stack(images) if dense else images, [f"c{c}" for c in range(num_classes)]
  )


@pytest.mark.parametrize("dense", [True, False])
def test_class_batch_sampler_global_labels(dense):
  sampler = ClassBatchSampler(class_images(dense=dense), batch_size=64)
  batch = sampler.sample_batch(np.random.default_rng(0), 2)
  assert batch.query_x.shape == (2, 64, 10, 10, 1)
  assert batch.support_x.shape == (2, 0, 10, 10, 1)
  np.testing.assert_array_equal(batch.query_x[..., 0, 0, 0], batch.query_y)
  assert set(np.unique(batch.query_y)) == set(range(6))
  again = sampler.sample_batch(np.random.default_rng(0), 2)
  np.testing.assert_array_equal(again.query_y, batch.query_y)
  with pytest.raises(ValueError, match="batch_size"):
    ClassBatchSampler(class_images(), batch_size=0)


def test_bad_arguments():
  with pytest.raises(ValueError, match="ways"):
    protonet(Flatten(), ways=1)
  with pytest.raises(ValueError, match="distance"):
    protonet(Flatten(), ways=2, distance="manhattan")
  with pytest.raises(ValueError, match="num_classes"):
    baseline(Flatten(), num_classes=1, ways=2)
  with pytest.raises(ValueError, match="classifier"):
    baseline(Flatten(), num_classes=3, ways=2, classifier="svm")
  with pytest.raises(ValueError, match="finetune_steps"):
    baseline_pp(Flatten(), num_classes=3, ways=2, finetune_steps=0)
  with pytest.raises(ValueError, match="scale must be a finite number > 0"):
    baseline_pp(Flatten(), num_classes=3, ways=2, scale=float("inf"))
  with pytest.raises(ValueError, match="entropy_weight must be a finite"):
    baseline(Flatten(), num_classes=3, ways=2, entropy_weight=float("nan"))
  with pytest.raises(ValueError, match="head_init"):
    baseline(Flatten(), num_classes=3, ways=2, head_init="ones")
  with pytest.raises(ValueError, match="no direction for the cosine head"):
    baseline_pp(Flatten(), num_classes=3, ways=2, head_init="zeros")


# (learner, its options): each learner with the tiny options below, and
# the variants these add.
EMBEDDING_LEARNERS = [
  dict(learner="protonet"),
  dict(learner="protonet", distance="cosine"),
  dict(learner="matching_net"),
  dict(learner="matching_net", fce=True),
  dict(learner="baseline"),
  dict(learner="baseline_pp"),
  dict(learner="baseline", normalize_features=True),
  dict(learner="baseline_pp", transductive_steps=2),
]
TINY_OPTIONS = {
  "protonet": {},
  "matching_net": dict(fce=False, read_steps=2),
  "baseline": dict(finetune_steps=3, finetune_lr=0.1, normalize_features=False),
}


@pytest.mark.parametrize(
  "overrides",
  EMBEDDING_LEARNERS,
  ids=lambda o: "-".join(str(v) for v in o.values()),
)
def test_embedding_learner_contract(overrides):
  config = protonet_omniglot.get_config("smoke")
  config.update(
    dict(
      ways=4,
      test_ways=3,
      image_size=10,
      num_classes=6,
      batch_size=8,
      learner=overrides["learner"],
    )
  )
  config.model_kwargs.filters = 4
  config.learner_kwargs = dict(
    TINY_OPTIONS[config.learner.replace("_pp", "")],
    **{k: v for k, v in overrides.items() if k != "learner"},
  )
  learner = from_config.build_learner(config)
  test_learner = from_config.build_learner(config, test=True)
  if config.learner.startswith("baseline"):
    train_batch = ClassBatchSampler(class_images(), batch_size=8).sample_batch(
      np.random.default_rng(0), 2
    )
  else:
    ep4 = tiny_episode(ways=4)
    train_batch = jax.tree.map(lambda x: np.stack([x, x]), ep4)
  meta0 = check_meta_training(learner, train_batch)
  ep = tiny_episode()  # 3-way test episode
  task_state = test_learner.adapt(meta0, ep.support, jax.random.key(0))
  chex.assert_tree_all_finite(task_state)
  logits = test_learner.predict(meta0, task_state, ep.query_x)
  chex.assert_shape(logits, (6, 3))
  chex.assert_tree_all_finite(logits)


@pytest.mark.parametrize(
  "name,variant",
  [
    ("protonet_omniglot", "smoke"),
    ("matching_net_omniglot", "smoke"),
    ("baseline_omniglot", "smoke"),
    ("baseline_pp_omniglot", "smoke"),
  ],
)
def test_config_smoke_runs_and_loads(
  name, variant, tmp_path, omniglot_data_dir
):
  config = importlib.import_module(f"experiments.configs.{name}").get_config(
    variant
  )
  config.data_dir = omniglot_data_dir
  results = runs.train_and_evaluate(config, str(tmp_path))
  assert results["config"]["learner"] == config.learner
  assert results["episodes"] == config.eval_episodes
  assert 0.0 <= results["mean"] <= 1.0
  run = runs.load_run(str(tmp_path))
  if config.learner.startswith("baseline"):  # filled in from the data
    assert (
      run.config.num_classes == results["config"]["num_classes"] > config.ways
    )
  ways, size = from_config.test_value(config, "ways"), config.image_size
  support = np.zeros((ways, size, size, 1), np.uint8)
  logits = runs.predict(run, support, np.arange(ways), support[:2])
  assert logits.shape == (2, ways) and np.isfinite(logits).all()
  if name == "protonet_omniglot":  # re-evaluated at another way count
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "experiments.evaluate",
        f"--workdir={tmp_path}",
        "--test_ways=3",
        "--test_queries=1",
        "--episodes=4",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
      env={**os.environ, "METAJAX_DATA_DIR": omniglot_data_dir},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.splitlines()[-1])
    assert (line["test_ways"], line["test_queries"]) == (3, 1)
    assert "test_inner_steps" not in line and line["episodes"] == 4


def test_config_validation_of_embedding_learners(tmp_path):
  config = protonet_omniglot.get_config("smoke")
  config.dataset = "sinusoid"
  with pytest.raises(ValueError, match="classification dataset"):
    runs.train_and_evaluate(config, str(tmp_path / "a"))
  config = importlib.import_module(
    "experiments.configs.baseline_omniglot"
  ).get_config("smoke")
  config.learner_kwargs.finetune_steps = 0
  with pytest.raises(ValueError, match="finetune_steps"):
    runs.train_and_evaluate(config, str(tmp_path / "b"))
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
