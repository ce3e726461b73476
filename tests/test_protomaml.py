"""ProtoMAML against references computed in numpy.

The embedding is one dense layer, z = x A + a, so that the head's start, the
inner step and the meta-gradient have closed forms: with G = (softmax - Y)/n
the gradient of the mean cross-entropy at the logits, the head's gradients
are z^T G and sum(G), the embedding's x^T (G K^T) and sum(G K^T).
"""

import chex
import flax.linen as nn
import jax
import numpy as np
import pytest

from experiments.configs import protomaml_omniglot
from metajax import models, runs
from metajax.learners.maml import head_only
from metajax.learners.protomaml import protomaml, prototype_head
from metajax.learners.protonet import protonet
from metajax.types import Episode
from tests.test_family import tiny_episode

WAYS, DIM, FEATURES = 3, 4, 5


def float_episode(ways=WAYS, shots=2, queries=2, seed=0):
  rng = np.random.default_rng(seed)
  return Episode(
    rng.standard_normal((ways * shots, DIM)).astype(np.float32),
    np.repeat(np.arange(ways, dtype=np.int32), shots),
    rng.standard_normal((ways * queries, DIM)).astype(np.float32),
    np.tile(np.arange(ways, dtype=np.int32), queries),
  )


def linear_learner(**options):
  """ProtoMAML over z = x A + a, and its meta-parameters (random, not zero)."""
  learner = protomaml(nn.Dense(FEATURES), ways=WAYS, **options)
  meta = learner.init(jax.random.key(0), float_episode())
  rng = np.random.default_rng(7)
  meta["embed"]["bias"] = rng.standard_normal(FEATURES).astype(np.float32)
  return learner, meta


def np_params(meta):
  e = meta["embed"]
  return np.float64(e["kernel"]), np.float64(e["bias"])


def np_means(v, y, ways=WAYS):
  return np.stack([v[y == k].mean(0) for k in range(ways)])


def np_start(x, y, A, a):
  """(K, b, c): the prototype head of the support (x, y) and the prototypes."""
  c = np_means(x @ A + a, y)
  return 2.0 * c.T, -(c**2).sum(-1), c


def np_softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_grads(x, y, A, a, K, b):
  """Gradients of the mean cross-entropy of (x A + a) K + b at labels y."""
  z = x @ A + a
  G = (np_softmax(z @ K + b) - np.eye(WAYS)[y]) / len(y)
  dz = G @ K.T
  return {"A": x.T @ dz, "a": dz.sum(0), "K": z.T @ G, "b": G.sum(0)}


def query_loss(learner, ep):
  def f(meta):
    state = learner.adapt(meta, ep.support, None)
    return learner.loss(learner.predict(meta, state, ep.query_x), ep.query_y)

  return f


def test_prototype_head_against_numpy():
  rng = np.random.default_rng(1)
  z = rng.standard_normal((7, FEATURES)).astype(np.float32)
  y = np.array([2, 0, 1, 2, 0, 0, 1])
  head = prototype_head(z, y, WAYS)
  c = np_means(z, y)
  np.testing.assert_allclose(head["kernel"], 2 * c.T, rtol=1e-6)
  np.testing.assert_allclose(head["bias"], -(c**2).sum(-1), rtol=1e-6)


def test_zero_steps_are_protonets_up_to_a_per_query_constant():
  learner, meta = linear_learner(inner_steps=0)
  ep = float_episode()
  state = learner.adapt(meta, ep.support, None)
  logits = np.asarray(learner.predict(meta, state, ep.query_x), np.float64)
  A, a = np_params(meta)
  c = np_means(ep.support_x @ A + a, ep.support_y)
  q = ep.query_x @ A + a
  protonet_logits = -((q[:, None] - c[None]) ** 2).sum(-1)
  # The difference is |q|^2, the same for every class of a query.
  np.testing.assert_allclose(
    logits - (q**2).sum(-1, keepdims=True), protonet_logits, atol=1e-4
  )
  np.testing.assert_allclose(
    np_softmax(logits), np_softmax(protonet_logits), atol=1e-5
  )
  assert np.ptp(protonet_logits, axis=-1).min() > 1e-2  # not all ties


def test_zero_steps_predict_as_protonet_on_conv4():
  net = models.Conv4(None, filters=4)
  ep = tiny_episode(ways=WAYS, queries=3)
  mine = protomaml(net, ways=WAYS, inner_steps=0)
  theirs = protonet(net, ways=WAYS)
  meta = mine.init(jax.random.key(0), ep)
  logits = mine.predict(meta, mine.adapt(meta, ep.support, None), ep.query_x)
  expected = theirs.predict(
    meta, theirs.adapt(meta, ep.support, None), ep.query_x
  )
  np.testing.assert_allclose(
    jax.nn.softmax(logits), jax.nn.softmax(expected), atol=1e-5
  )
  np.testing.assert_array_equal(logits.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("head_alone", [False, True])
def test_one_inner_step_against_numpy(head_alone):
  """One SGD step over the whole network, or over the head alone (a frozen
  embedding, `trainable=head_only()`), from the prototype head."""
  lr = 0.3
  learner, meta = linear_learner(
    inner_lr=lr, inner_steps=1, trainable=head_only() if head_alone else None
  )
  ep = float_episode()
  state = learner.adapt(meta, ep.support, None)
  A, a = np_params(meta)
  K, b, _ = np_start(ep.support_x, ep.support_y, A, a)
  g = np_grads(ep.support_x, ep.support_y, A, a, K, b)
  if head_alone:
    g["A"], g["a"] = 0 * A, 0 * a
  expected = {
    "embed": {"kernel": A - lr * g["A"], "bias": a - lr * g["a"]},
    "head": {"kernel": K - lr * g["K"], "bias": b - lr * g["b"]},
  }
  chex.assert_trees_all_close(state, expected, rtol=1e-4, atol=1e-5)
  assert np.abs(g["K"]).max() > 1e-3  # the step moves the head


def first_order_meta_gradient(meta, ep, lr, through_prototypes):
  """The first-order meta-gradient of one inner step, in numpy: the query
  gradient at the adapted weights, carried back through the start only."""
  A, a = np_params(meta)
  K, b, c = np_start(ep.support_x, ep.support_y, A, a)
  g = np_grads(ep.support_x, ep.support_y, A, a, K, b)
  adapted = (A - lr * g["A"], a - lr * g["a"], K - lr * g["K"], b - lr * g["b"])
  gq = np_grads(ep.query_x, ep.query_y, *adapted)
  dA, da = gq["A"], gq["a"]
  if through_prototypes:
    # K = 2 c^T and b = -|c|^2: the gradient at c_k, then c = means(x) A + a.
    gc = 2.0 * gq["K"].T - 2.0 * c * gq["b"][:, None]
    dA = dA + np_means(ep.support_x, ep.support_y).T @ gc
    da = da + gc.sum(0)
  return {"kernel": dA, "bias": da}


def test_first_order_meta_gradient_flows_through_the_prototypes():
  lr = 0.3
  ep = float_episode()
  grads = {}
  for through in (True, False):
    learner, meta = linear_learner(
      inner_lr=lr, inner_steps=1, prototype_gradient=through
    )
    grads[through] = jax.grad(query_loss(learner, ep))(meta)["embed"]
    expected = first_order_meta_gradient(meta, ep, lr, through)
    chex.assert_trees_all_close(grads[through], expected, rtol=1e-4, atol=1e-5)
  # The prototype path changes the meta-gradient, by much.
  diff = np.abs(grads[True]["kernel"] - grads[False]["kernel"]).max()
  assert diff > 0.1 * np.abs(grads[True]["kernel"]).max()


def directional_derivative(f, params, direction, eps=1e-2):
  """(f(p + eps d) - f(p - eps d)) / (2 eps)."""
  shift = lambda s: jax.tree.map(lambda p, d: p + s * d, params, direction)
  return float(f(shift(eps)) - f(shift(-eps))) / (2 * eps)


@pytest.mark.parametrize("steps", [0, 1])
def test_second_order_meta_gradient_matches_finite_differences(steps):
  """Differentiating through the inner step and the start is the derivative
  of the query loss (central differences along a random direction); the
  gradient that stops at the prototypes is not."""
  ep = float_episode()
  options = dict(inner_lr=0.3, inner_steps=steps, first_order=False)
  learner, meta = linear_learner(**options)
  rng = np.random.default_rng(3)
  direction = jax.tree.map(
    lambda p: rng.standard_normal(p.shape).astype(np.float32), meta
  )
  numeric = directional_derivative(query_loss(learner, ep), meta, direction)
  for through in (True, False):
    learner, _ = linear_learner(prototype_gradient=through, **options)
    grad = jax.grad(query_loss(learner, ep))(meta)
    analytic = sum(
      float(np.vdot(g, d))
      for g, d in zip(jax.tree.leaves(grad), jax.tree.leaves(direction))
    )
    close = abs(analytic - numeric) <= 1e-2 * abs(numeric) + 1e-4
    assert close == through, (through, analytic, numeric)


def test_trains_with_more_ways_than_it_tests():
  """The head has no meta-parameters, so one meta_params serves any ways."""
  train = protomaml(nn.Dense(FEATURES), ways=5, inner_steps=1)
  test = protomaml(nn.Dense(FEATURES), ways=2, inner_steps=1)
  ep5, ep2 = float_episode(ways=5), float_episode(ways=2, seed=3)
  meta = train.init(jax.random.key(0), ep5)
  assert set(meta) == {"embed"}
  for learner, ep, ways in ((train, ep5, 5), (test, ep2, 2)):
    logits = learner.predict(
      meta, learner.adapt(meta, ep.support, None), ep.query_x
    )
    chex.assert_shape(logits, (ep.query_x.shape[0], ways))


@pytest.mark.parametrize(
  "bad",
  [
    dict(ways=1),
    dict(inner_steps=-1),
    dict(inner_lr=0.0),
    dict(first_order="no"),
    dict(prototype_gradient=1),
  ],
)
def test_bad_options_name_the_option(bad):
  options = {"ways": WAYS, **bad}
  with pytest.raises(ValueError, match=next(iter(bad))):
    protomaml(nn.Dense(FEATURES), **options)


def test_config_smoke_runs_and_loads(tmp_path, omniglot_data_dir):
  config = protomaml_omniglot.get_config("smoke")
  config.data_dir = omniglot_data_dir
  results = runs.train_and_evaluate(config, str(tmp_path))
  assert results["config"]["learner"] == "protomaml"
  assert results["episodes"] == config.eval_episodes
  assert 0.0 <= results["mean"] <= 1.0
  run = runs.load_run(str(tmp_path))
  assert set(run.meta_params) == {"embed"}
  size = config.image_size
  support = np.zeros((config.ways, size, size, 1), np.uint8)
  logits = runs.predict(run, support, np.arange(config.ways), support[:2])
  assert logits.shape == (2, config.ways) and np.isfinite(logits).all()
