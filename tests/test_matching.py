"""Matching Networks: attention by hand, FCE, training, evaluation."""

import chex
import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from metajax import evaluate as evaluate_lib
from metajax import models
from metajax import step as step_lib
from metajax.data.episodes import EpisodeSampler
from metajax.data.sources import ClassImages
from metajax.learners.matching import AttentionReader
from metajax.learners.matching import SupportEncoder
from metajax.learners.matching import matching_net
from metajax.types import Episode


class Flatten(nn.Module):
  """A parameter-free embedding: the flattened image."""

  @nn.compact
  def __call__(self, x):
    return x.reshape((x.shape[0], -1))


class FlatDense(nn.Module):
  """Flatten then Dense: an embedding without batch statistics."""

  features: int = 6

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features)(x.reshape((x.shape[0], -1)))


def float_episode(
  ways=3, shots=2, queries=2, shape=(4, 4, 1), noise=0.5, seed=0
):
  """Class prototypes + Gaussian noise, float32 images."""
  rng = np.random.default_rng(seed)
  protos = rng.standard_normal((ways,) + shape)

  def draw(n):
    y = np.repeat(np.arange(ways, dtype=np.int32), n)
    x = protos[y] + noise * rng.standard_normal((len(y),) + shape)
    return x.astype(np.float32), y

  support_x, support_y = draw(shots)
  query_x, query_y = draw(queries)
  return Episode(support_x, support_y, query_x, query_y)


def init(learner, episode, seed=0):
  """Jitted `learner.init`: op-by-op LSTM and conv inits are slow."""
  return jax.jit(learner.init)(jax.random.key(seed), episode)


def cosine_attention_by_hand(support_x, support_y, query_x, ways, scale):
  s = support_x.reshape(len(support_x), -1).astype(np.float64)
  q = query_x.reshape(len(query_x), -1).astype(np.float64)
  cos = (q @ s.T) / (
    np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(s, axis=1)[None]
  )
  a = np.exp(scale * cos)
  a /= a.sum(axis=1, keepdims=True)
  return a @ np.eye(ways)[support_y]


@pytest.mark.parametrize("scale", [1.0, 3.5])
def test_attention_matches_hand_computation(scale):
  rng = np.random.default_rng(1)
  support_x = rng.standard_normal((3, 2, 2, 1)).astype(np.float32)
  support_y = np.array([0, 1, 1], np.int32)
  query_x = rng.standard_normal((4, 2, 2, 1)).astype(np.float32)
  query_y = np.array([0, 1, 0, 1], np.int32)
  ep = Episode(support_x, support_y, query_x, query_y)
  learner = matching_net(Flatten(), ways=2, scale=scale)
  params = init(learner, ep)
  assert set(params) == {"embed"}
  state = learner.adapt(params, ep.support, None)
  log_probs = learner.predict(params, state, query_x)
  chex.assert_shape(log_probs, (4, 2))
  expected = cosine_attention_by_hand(support_x, support_y, query_x, 2, scale)
  np.testing.assert_allclose(np.exp(log_probs), expected, rtol=1e-5)
  np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0, rtol=1e-5)
  # The loss on log-probabilities is the negative log-likelihood.
  np.testing.assert_allclose(
    learner.loss(log_probs, query_y),
    -np.mean(np.log(expected[np.arange(4), query_y])),
    rtol=1e-5,
  )
  assert learner.metric_name == "accuracy"
  np.testing.assert_allclose(
    learner.metric(log_probs, query_y), np.mean(expected.argmax(1) == query_y)
  )


def test_class_absent_from_support_gets_finite_log_prob():
  ep = float_episode(ways=2, shots=2)
  learner = matching_net(Flatten(), ways=3)  # class 2 has no support item.
  params = init(learner, ep)

  def loss(p):
    out = learner.predict(p, learner.adapt(p, ep.support, None), ep.query_x)
    return learner.loss(out, ep.query_y), out

  (value, out), _ = jax.value_and_grad(loss, has_aux=True)(params)
  chex.assert_tree_all_finite((value, out))
  assert np.all(np.exp(out[:, 2]) == 0)
  np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-5)


def test_uint8_images_are_scaled():
  ep = float_episode()
  images = lambda x: np.clip(x * 40 + 128, 0, 255).astype(np.uint8)
  ep8 = ep._replace(support_x=images(ep.support_x), query_x=images(ep.query_x))
  learner = matching_net(Flatten(), ways=3)
  params = init(learner, ep8)
  state = learner.adapt(params, ep8.support, None)
  out8 = learner.predict(params, state, ep8.query_x)
  f = lambda x: x.astype(np.float32) / 255
  out = learner.predict(
    params,
    learner.adapt(params, (f(ep8.support_x), ep8.support_y), None),
    f(ep8.query_x),
  )
  np.testing.assert_allclose(out8, out, rtol=1e-5, atol=1e-6)


def test_fce_shapes_gradients_and_query_independence():
  ep = float_episode(ways=3, shots=2, queries=2)
  learner = matching_net(FlatDense(6), ways=3, fce=True, read_steps=3)
  params = init(learner, ep)
  assert set(params) == {"embed", "g", "f"}
  adapt, predict = jax.jit(learner.adapt), jax.jit(learner.predict)
  state = adapt(params, ep.support, None)
  chex.assert_shape(state["g"], (6, 6))
  out = predict(params, state, ep.query_x)
  chex.assert_shape(out, (6, 3))
  chex.assert_tree_all_finite(out)
  np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-5)

  @jax.jit
  @jax.grad
  def query_grads(p):
    s = learner.adapt(p, ep.support, None)
    return learner.loss(learner.predict(p, s, ep.query_x), ep.query_y)

  grads = query_grads(params)
  chex.assert_tree_all_finite(grads)
  for name in ("embed", "g", "f"):
    assert float(optax.tree.norm(grads[name])) > 0, name

  perm = np.array([4, 0, 5, 2, 1, 3])
  np.testing.assert_allclose(
    predict(params, state, ep.query_x[perm]), out[perm], rtol=1e-5, atol=1e-6
  )
  one = predict(params, state, ep.query_x[2:3])
  np.testing.assert_allclose(one, out[2:3], rtol=1e-5, atol=1e-6)

  # g(x_i, S) is contextual: changing only the last support item changes the
  # first item's encoding with FCE, and not without it.
  changed_x = ep.support_x.copy()
  changed_x[-1] += 1.0
  changed = adapt(params, (changed_x, ep.support_y), None)["g"]
  assert not np.allclose(changed[0], state["g"][0], atol=1e-6)
  plain = matching_net(FlatDense(6), ways=3)
  plain_g0 = plain.adapt(params, ep.support, None)["g"]
  plain_g1 = plain.adapt(params, (changed_x, ep.support_y), None)["g"]
  np.testing.assert_array_equal(plain_g0[:-1], plain_g1[:-1])
  assert not np.allclose(plain_g0[-1], plain_g1[-1])


def numpy_lstm(p, carry, x):
  """flax's LSTMCell in numpy: gates i, f, g, o; carry (c, h)."""
  c, h = carry
  sig = lambda z: 1 / (1 + np.exp(-z))
  gate = lambda n: (
    x @ np.asarray(p["i" + n]["kernel"])
    + h @ np.asarray(p["h" + n]["kernel"])
    + np.asarray(p["h" + n]["bias"])
  )
  c = sig(gate("f")) * c + sig(gate("i")) * np.tanh(gate("g"))
  return c, sig(gate("o")) * np.tanh(c)


def test_attention_reader_matches_numpy():
  rng = np.random.default_rng(2)
  f_prime = rng.standard_normal((2, 3)).astype(np.float32)
  g = rng.standard_normal((4, 3)).astype(np.float32)
  reader = AttentionReader(features=3, read_steps=2)
  params = reader.init(jax.random.key(0), f_prime, g)["params"]
  c = h = r = np.zeros_like(f_prime)
  for _ in range(2):
    c, h_hat = numpy_lstm(params["cell"], (c, h + r), f_prime)
    h = h_hat + f_prime
    a = np.exp(h @ g.T)
    r = (a / a.sum(axis=1, keepdims=True)) @ g
  np.testing.assert_allclose(
    reader.apply({"params": params}, f_prime, g), h, rtol=1e-5, atol=1e-6
  )


def test_support_encoder_is_bidirectional_with_skip():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((4, 3)).astype(np.float32)
  params = SupportEncoder(features=3).init(jax.random.key(0), x)["params"]
  zeros = np.zeros((3,), np.float32)

  def run(p, seq):
    carry, out = (zeros, zeros), []
    for row in seq:
      carry = numpy_lstm(p, carry, row)
      out.append(carry[1])
    return np.stack(out)

  expected = (
    x + run(params["forward"], x) + run(params["backward"], x[::-1])[::-1]
  )
  np.testing.assert_allclose(
    SupportEncoder(features=3).apply({"params": params}, x),
    expected,
    rtol=1e-5,
    atol=1e-6,
  )


def make_batch():
  ep = float_episode(ways=3, shots=2, queries=2, noise=1.0, seed=3)
  ep2 = float_episode(ways=3, shots=2, queries=2, noise=1.0, seed=4)
  return jax.tree.map(lambda *x: np.stack(x), ep, ep2)


@pytest.mark.parametrize("fce", [False, True])
def test_meta_training_lowers_loss_and_traces_once(fce):
  batch = make_batch()
  learner = matching_net(FlatDense(8), ways=3, fce=fce, read_steps=2, scale=5.0)
  traces = []

  def counting_predict(*args):
    traces.append(1)
    return learner.predict(*args)

  counted = learner._replace(predict=counting_predict)
  opt = optax.adam(1e-2)
  state = step_lib.init_train_state(counted, opt, jax.random.key(0), batch)
  step = step_lib.make_meta_step(counted, opt)
  losses = []
  for i in range(30):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics["loss"]))
  assert len(traces) == 1
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="ways"):
    matching_net(Flatten(), ways=1)
  with pytest.raises(ValueError, match="ways"):
    matching_net(Flatten(), ways=2.5)
  with pytest.raises(ValueError, match="read_steps"):
    matching_net(Flatten(), ways=2, read_steps=0)
  with pytest.raises(ValueError, match="scale"):
    matching_net(Flatten(), ways=2, scale=0)
  with pytest.raises(ValueError, match="scale"):
    matching_net(Flatten(), ways=2, scale=-1.0)


@pytest.mark.parametrize("fce", [False, True])
def test_evaluate_conv4_on_uint8_episodes(fce):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, 5, 28, 28, 1), dtype=np.uint8)
  classes = ClassImages(images, [f"c{i}" for i in range(6)])
  sampler = EpisodeSampler(classes, ways=3, shots=1, queries=2)
  learner = matching_net(
    models.Conv4(None, filters=8), ways=3, fce=fce, read_steps=2
  )
  example = sampler.sample(np.random.default_rng(1))
  params = init(learner, example)
  if fce:
    assert jax.tree.leaves(params["g"])[0].shape[-1] == 8
  result = evaluate_lib.evaluate(
    learner, params, sampler, episodes=4, batch_size=2
  )
  assert result.metric == "accuracy"
  assert result.episodes == 4
  assert 0.0 <= result.mean <= 1.0
  assert result.ci95 >= 0.0
  assert np.all((result.values >= 0) & (result.values <= 1))
