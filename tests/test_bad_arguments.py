"""Public entries' bad arguments: meta_train, the learner factories, the
samplers' sources and sizes, predict's inputs, load_run.

Each test backs a row of docs/reliability.md. The regression run is
conftest's `finished_run`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import maml_sinusoid
from experiments.configs import protonet_omniglot
from metajax import from_config
from metajax import models
from metajax import runs
from metajax import train as train_lib
from metajax.data.episodes import ClassBatchSampler, EpisodeSampler
from metajax.data.sinusoid import SinusoidSampler
from metajax.data.sources import ClassImages
from metajax.learners import baseline, maml, meta_sgd, protonet, reptile
from metajax.types import Episode

from tests.helpers import sinusoid_learner


# --------------------------------------------- public entries: bad arguments


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1"),
    (dict(log_every=0), "log_every must be an integer >= 1"),
    (dict(val_every=-1), "val_every must be an integer >= 0"),
    (dict(val_episodes=0), "val_episodes must be an integer >= 1"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(num_steps=2.5), "num_steps must be an integer"),
  ],
  ids=[
    "checkpoint_every=0",
    "log_every=0",
    "val_every=-1",
    "val_episodes=0",
    "seed=-1",
    "num_steps=2.5",
  ],
)
def test_meta_train_bad_arguments_write_nothing(tmp_path, kwargs, match):
  args = dict(
    outer_opt=optax.sgd(0.1),
    num_steps=2,
    meta_batch_size=2,
    workdir=str(tmp_path / "w"),
  )
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train_lib.meta_train(
      sinusoid_learner((8,)), SinusoidSampler(shots=2, queries=2), **args
    )
  assert not (tmp_path / "w").exists()


class Flatten(nn.Module):
  """A parameter-free embedding."""

  @nn.compact
  def __call__(self, x):
    return x.reshape(x.shape[0], -1).astype(jnp.float32)


@pytest.mark.parametrize(
  "factory,match",
  [
    (
      lambda: meta_sgd(models.MLP(1), inner_lr=0.0),
      "inner_lr must be a finite number > 0",
    ),
    (
      lambda: reptile(models.MLP(1), inner_lr=-1.0),
      "inner_lr must be a finite number > 0",
    ),
    (lambda: reptile(models.MLP(1), inner_steps=-1), "inner_steps must be"),
    (
      lambda: maml(models.MLP(1), multi_step_loss=[1.0, 1.0], inner_steps=1),
      r"multi_step_loss needs one weight per inner step \(1\), got 2",
    ),
    (
      lambda: maml(
        models.MLP(1),
        inner_opt=optax.sgd(0.1),
        inner_opt_fn=lambda h: optax.sgd(h),
        inner_hparams=0.1,
      ),
      "either inner_opt .* or inner_opt_fn",
    ),
    (
      lambda: maml(models.MLP(1), inner_opt_fn=lambda h: optax.sgd(h)),
      "inner_opt_fn needs inner_hparams",
    ),
    (
      lambda: protonet(Flatten(), ways=2, scale=0.0),
      "scale must be a finite number > 0",
    ),
    (lambda: baseline(Flatten(), num_classes=3, ways=1), "ways must be"),
    (
      lambda: baseline(Flatten(), num_classes=3, ways=2, transductive_steps=-1),
      "transductive_steps must be",
    ),
    (
      lambda: baseline(Flatten(), num_classes=3, ways=2, entropy_weight=-1.0),
      "entropy_weight must be a finite number >= 0",
    ),
  ],
  ids=[
    "meta_sgd_inner_lr",
    "reptile_inner_lr",
    "reptile_inner_steps",
    "maml_multi_step_loss",
    "maml_two_inner_opts",
    "maml_no_inner_hparams",
    "protonet_scale",
    "baseline_ways",
    "baseline_transductive_steps",
    "baseline_entropy_weight",
  ],
)
def test_learner_factories_reject_bad_arguments(factory, match):
  with pytest.raises(ValueError, match=match):
    factory()


def uint8_classes(num_classes=4, per_class=5, shape=(3, 3, 1)):
  return [np.zeros((per_class,) + shape, np.uint8) for _ in range(num_classes)]


@pytest.mark.parametrize(
  "images,match",
  [
    (
      uint8_classes()[:3] + [np.zeros((5, 4, 3, 1), np.uint8)],
      r"class 3 \('c3'\) has examples of shape \(4, 3, 1\) and dtype uint8, "
      r"but class 0 \('c0'\) has \(3, 3, 1\) and uint8",
    ),
    (
      uint8_classes()[:3] + [np.zeros((5, 3, 3, 1), np.float32)],
      "class 3 .* dtype float32, but class 0 .* uint8",
    ),
    ([np.zeros((5, 3, 3, 1), np.int64)] * 4, "dtype int64; use uint8"),
    (
      [np.zeros((5, 3, 3, 1), np.float32)] * 3
      + [np.full((5, 3, 3, 1), np.nan, np.float32)],
      r"NaN or infinite values \(class 3 \('c3'\)\)",
    ),
    (np.full((4, 5, 3, 3, 1), np.inf, np.float32), "NaN or infinite"),
    (
      uint8_classes()[:3] + [[[0, 1]] * 5],
      r"class 3 \('c3'\) must be an array",
    ),
    (np.zeros((4, 5), np.uint8), r"must be \[num_classes, n, \*shape\]"),
  ],
  ids=[
    "other_shape",
    "other_dtype",
    "int64",
    "nan_class",
    "inf_dense",
    "not_an_array",
    "dense_2d",
  ],
)
@pytest.mark.parametrize("sampler", ["episodes", "batches"])
def test_samplers_reject_malformed_sources(images, match, sampler):
  classes = ClassImages(images, [f"c{i}" for i in range(len(images))])
  with pytest.raises(ValueError, match=match):
    if sampler == "episodes":
      EpisodeSampler(classes, ways=2, shots=1, queries=1)
    else:
      ClassBatchSampler(classes, batch_size=4)


def test_samplers_reject_bad_sizes():
  classes = ClassImages(uint8_classes(), [f"c{i}" for i in range(4)])
  with pytest.raises(ValueError, match="ways must be an integer >= 2, got 2.5"):
    EpisodeSampler(classes, ways=2.5, shots=1, queries=1)
  with pytest.raises(ValueError, match="meta_batch_size must be an integer"):
    EpisodeSampler(classes, ways=2, shots=1, queries=1).sample_batch(
      np.random.default_rng(0), 0
    )
  with pytest.raises(ValueError, match="at least 2 classes, got 1"):
    ClassBatchSampler(ClassImages(uint8_classes(1), ["c0"]), batch_size=4)
  with pytest.raises(ValueError, match="meta_batch_size must be an integer"):
    ClassBatchSampler(classes, batch_size=4).sample_batch(
      np.random.default_rng(0), 0
    )


@pytest.fixture(scope="module")
def classifier_run():
  """An untrained ProtoNet run, 5-way at test time, 14x14 images."""
  config = protonet_omniglot.get_config("smoke")
  learner = from_config.build_learner(config, test=True)
  size = config.image_size
  example = Episode(
    np.zeros((2, size, size, 1), np.uint8),
    np.arange(2),
    np.zeros((2, size, size, 1), np.uint8),
    np.arange(2),
  )
  params = from_config.build_learner(config).init(jax.random.key(0), example)
  return runs.Run(config=config, learner=learner, meta_params=params)


def test_predict_accepts_valid_classification_input(classifier_run):
  ways, size = from_config.test_value(classifier_run.config, "ways"), 14
  x = np.random.default_rng(0).integers(0, 256, (ways, size, size, 1), np.uint8)
  logits = runs.predict(classifier_run, x, np.arange(ways), x[:3])
  assert logits.shape == (3, ways) and np.isfinite(logits).all()


def image_args(ways=5, size=14, **changes):
  rng = np.random.default_rng(0)
  args = dict(
    support_x=rng.integers(0, 256, (ways, size, size, 1), np.uint8),
    support_y=np.arange(ways),
    query_x=rng.random((2, size, size, 1)),
  )
  args.update({k: v(args) if callable(v) else v for k, v in changes.items()})
  return args


@pytest.mark.parametrize(
  "changes,match",
  [
    (
      dict(support_x=lambda a: a["support_x"][..., 0]),
      r"support_x has shape \(5, 14, 14\); this run expects \[n, 14, 14, 1\]",
    ),
    (
      dict(query_x=np.zeros((2, 28, 28, 1), np.float32)),
      r"query_x has shape \(2, 28, 28, 1\); this run expects \[n, 14, 14, 1\]",
    ),
    (
      dict(support_y=np.arange(4)),
      r"support_y has shape \(4,\) but support_x "
      "has 5 rows",
    ),
    (
      dict(support_y=np.arange(5)[:, None]),
      r"support_y has shape \(5, 1\); "
      r"this run expects \[n\] labels",
    ),
    (
      dict(support_y=np.arange(5) + 2),
      r"labels must lie in 0..4 for this "
      r"5-way run; got \[2, 3, 4, 5, 6\]",
    ),
    (dict(support_y=np.arange(5) - 1), "labels must lie in 0..4"),
    (
      dict(support_y=np.arange(5.0)),
      "support_y must hold integer labels, got float64",
    ),
    (dict(query_x=np.full((2, 14, 14, 1), np.nan)), "query_x holds NaN"),
    (
      dict(support_x=lambda a: a["support_x"].astype(np.int64)),
      "support_x has dtype int64; use uint8 or float",
    ),
    (
      dict(
        support_x=np.zeros((0, 14, 14, 1), np.uint8),
        support_y=np.zeros((0,), np.int64),
      ),
      "support_x is empty",
    ),
  ],
  ids=[
    "support_x_shape",
    "query_x_shape",
    "support_y_rows",
    "support_y_2d",
    "labels_above",
    "labels_below",
    "float_labels",
    "nan_query",
    "int64_pixels",
    "empty_support",
  ],
)
def test_predict_rejects_bad_classification_input(
  classifier_run, changes, match
):
  with pytest.raises(ValueError, match=match):
    runs.predict(classifier_run, **image_args(**changes))


@pytest.mark.parametrize(
  "changes,match",
  [
    (
      dict(support_y=np.zeros((5, 2))),
      r"support_y has shape \(5, 2\); this "
      r"run expects \[n\] or \[n, 1\] targets",
    ),
    (dict(support_y=np.full((5, 1), np.nan)), "support_y holds NaN"),
    (
      dict(support_x=np.full((5, 1), np.inf)),
      "support_x holds NaN or infinite",
    ),
    (
      dict(support_x=np.zeros((5, 2))),
      r"support_x has shape \(5, 2\); this "
      r"run expects \[n, 1\]",
    ),
  ],
  ids=["targets_2_columns", "nan_targets", "inf_inputs", "input_shape"],
)
def test_predict_rejects_bad_regression_input(finished_run, changes, match):
  run = runs.load_run(str(finished_run))
  args = dict(
    support_x=np.linspace(-3, 3, 5)[:, None],
    support_y=np.sin(np.linspace(-3, 3, 5)),
    query_x=np.zeros((2, 1)),
  )
  assert runs.predict(run, **args).shape == (2, 1)
  args.update(changes)
  with pytest.raises(ValueError, match=match):
    runs.predict(run, **args)


def test_load_run_of_a_folder_without_a_run(tmp_path):
  with pytest.raises(ValueError, match="holds no run"):
    runs.load_run(str(tmp_path))
  (tmp_path / "config.json").write_text(
    maml_sinusoid.get_config("smoke").to_json()
  )
  with pytest.raises(ValueError, match="holds no checkpoint"):
    runs.load_run(str(tmp_path))
