"""The learner contract, over every factory of `metajax.learners.FACTORIES`.

Each factory, called directly with a tiny network and options: two jitted
meta-steps trace once, stay finite, change the meta-parameters and keep
their tree; the trained learner adapts to a new episode and predicts one
finite row of `ways` logits per query; the factory refuses a bad option
with a message naming it.
"""

import inspect

import chex
import jax
import numpy as np
import pytest

from metajax import learners
from metajax import models
from metajax.types import TRAIN_ON, Episode
from tests.test_family import check_meta_training, tiny_episode

WAYS, NUM_CLASSES = 3, 5
# Each factory's tiny options, and one option value it must refuse.
TINY = {
  "maml": (dict(inner_steps=2), dict(inner_lr=float("inf"))),
  "fomaml": (dict(inner_steps=2), dict(inner_steps=-1)),
  "meta_sgd": (dict(inner_steps=1), dict(inner_lr=0.0)),
  "meta_curvature": (dict(inner_steps=2), dict(vectors="dense")),
  "anil": (dict(inner_steps=1), dict(inner_lr=float("nan"))),
  "imaml": (dict(inner_steps=2, cg_steps=2), dict(lam=0.0)),
  "reptile": (dict(inner_steps=2, inner_lr=1e-2), dict(inner_batch_size=0)),
  "meta_learner_lstm": (dict(inner_steps=2, hidden=3), dict(hidden=0)),
  "protonet": (dict(), dict(distance="manhattan")),
  "protomaml": (dict(inner_steps=2), dict(prototype_gradient="yes")),
  "r2d2": (dict(), dict(lambda_init=0.0)),
  "lrd2": (dict(newton_steps=2), dict(newton_steps=0)),
  "metaoptnet": (dict(solver_steps=3), dict(c_reg=0.0)),
  "matching_net": (dict(read_steps=2), dict(read_steps=0)),
  "baseline": (dict(finetune_steps=2), dict(finetune_lr=-1.0)),
  "baseline_pp": (dict(finetune_steps=2), dict(finetune_steps=0)),
  "mann": (
    dict(memory_slots=6, memory_size=4, controller_size=8, read_heads=2),
    dict(gamma=2.0),
  ),
  "snail": (dict(attention=((4, 4), (6, 4)), tc_filters=3), dict(tc_filters=0)),
}


def test_every_factory_is_covered():
  assert set(TINY) == set(learners.FACTORIES)


def build(name, **options):
  """The factory `name` with a tiny Conv4 and what its signature asks for."""
  factory = learners.FACTORIES[name]
  params = inspect.signature(factory).parameters
  embedding = next(iter(params)) == "embedding"
  # The black-box learners embed one example at a time, without batch norm.
  model = models.Conv4(
    None if embedding else WAYS, filters=4, norm=name not in ("mann", "snail")
  )
  context = {"ways": WAYS, "shots": 1, "num_classes": NUM_CLASSES}
  return factory(
    model, **{k: v for k, v in context.items() if k in params}, **options
  )


def class_batch(size=8):
  """A pre-training batch: no support set, queries with global labels."""
  rng = np.random.default_rng(0)
  return Episode(
    np.zeros((0, 10, 10, 1), np.uint8),
    np.zeros((0,), np.int32),
    rng.integers(0, 256, (size, 10, 10, 1), np.uint8),
    rng.integers(0, NUM_CLASSES, (size,), np.int32),
  )


@pytest.mark.parametrize("name", sorted(TINY))
def test_learner_contract(name):
  options, bad = TINY[name]
  learner = build(name, **options)
  assert learner.train_on in TRAIN_ON
  assert learner.metric_name == "accuracy"
  train = (
    class_batch()
    if learner.train_on == "class_batches"
    else (tiny_episode(ways=WAYS))
  )
  batch = jax.tree.map(lambda x: np.stack([x, x]), train)
  meta0 = check_meta_training(learner, batch)
  ep = tiny_episode(ways=WAYS)
  state = learner.adapt(meta0, ep.support, jax.random.key(0))
  chex.assert_tree_all_finite(state)
  logits = learner.predict(meta0, state, ep.query_x)
  chex.assert_shape(logits, (ep.query_x.shape[0], WAYS))
  chex.assert_tree_all_finite(logits)
  option = next(iter(bad))
  with pytest.raises(ValueError, match=option):
    build(name, **{**options, **bad})
