"""Learned optimizers: the Meta-Learner LSTM and Andrychowicz et al.'s LSTM."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax import learned_optimizers as lo
from metajax.inner import init_lstm_optimizer, init_meta_lstm, lstm_optimizer
from metajax.inner import meta_lstm
from metajax.inner.meta_lstm import preprocess
from metajax.learners.meta_lstm import meta_learner_lstm
from tests.test_family import check_gradient_by_finite_differences
from tests.test_family import sine_episode


def np_sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def np_preprocess(x, p=10.0):
  """Andrychowicz et al., Appendix A, one scalar at a time."""
  out = []
  for v in np.ravel(x):
    if abs(v) >= np.exp(-p):
      out.append((np.log(abs(v)) / p, np.sign(v)))
    else:
      out.append((-1.0, np.exp(p) * v))
  return np.array(out).reshape(np.shape(x) + (2,))


def np_lstm(w, x, h, c):
  """A textbook LSTM step on one coordinate (gates i, f, g, o)."""
  z = x @ w["w_x"] + h @ w["w_h"] + w["b"]
  n = len(h)
  i, f, g, o = (z[k * n : (k + 1) * n] for k in range(4))
  c = np_sigmoid(f) * c + np_sigmoid(i) * np.tanh(g)
  return np_sigmoid(o) * np.tanh(c), c


def randomized(theta, key):
  """`theta` with N(0, 0.25) weights of its shapes: of order one, so every
  input visibly matters."""
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten(
    [0.5 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
  )


def random_theta(key, hidden):
  return randomized(init_meta_lstm(key, hidden), jax.random.fold_in(key, 1))


def test_preprocess_by_hand():
  x = np.array([1e-5, -0.5, 0.0, 3.0, -2e-6], np.float32)
  np.testing.assert_allclose(
    preprocess(x), np_preprocess(x.astype(np.float64)), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    preprocess(x)[1], [np.log(0.5) / 10, -1], rtol=1e-6
  )
  grads = jax.grad(lambda v: jnp.sum(preprocess(v)))(jnp.zeros(3))
  chex.assert_tree_all_finite(grads)


def test_meta_lstm_update_by_hand():
  """Two updates of a 3-coordinate parameter against a numpy computation of
  the paper's equations (the second step uses the carried state)."""
  hidden = 3
  theta = random_theta(jax.random.key(0), hidden)
  th = jax.tree.map(lambda a: np.asarray(a, np.float64), theta)
  params = np.array([0.3, -1.2, 0.05])
  grads = [np.array([0.2, -3e-6, 1.5]), np.array([-0.7, 0.01, 0.0])]
  losses = [2.5, 0.8]

  tx = meta_lstm(theta)
  state = tx.init(jnp.asarray(params, jnp.float32))
  got = jnp.asarray(params, jnp.float32)
  h = np.zeros((3, hidden))
  c = np.zeros((3, hidden))
  f_prev = np.zeros(3)
  i_prev = np.zeros(3)
  want = params.copy()
  for g, loss in zip(grads, losses):
    updates, state = jax.jit(tx.update)(
      jnp.asarray(g, jnp.float32), state, got, value=loss
    )
    got = optax.apply_updates(got, updates)
    new = np.zeros(3)
    for k in range(3):
      x = np.concatenate([np_preprocess(g[k]), np_preprocess(loss)])
      h[k], c[k] = np_lstm(th["lstm"], x, h[k], c[k])
      wf, wi = th["forget"]["w"], th["input"]["w"]
      f = np_sigmoid(
        h[k] @ wf[:hidden]
        + want[k] * wf[hidden]
        + f_prev[k] * wf[hidden + 1]
        + th["forget"]["b"]
      )
      i = np_sigmoid(
        h[k] @ wi[:hidden]
        + want[k] * wi[hidden]
        + i_prev[k] * wi[hidden + 1]
        + th["input"]["b"]
      )
      new[k] = f * want[k] - i * g[k]  # c_t = f_t c_{t-1} - i_t grad_t
      f_prev[k], i_prev[k] = f, i
    want = new
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(state.forget, f_prev, rtol=2e-5)
    np.testing.assert_allclose(state.input, i_prev, rtol=2e-5)


def test_meta_lstm_starts_as_small_gradient_descent():
  tx = meta_lstm(init_meta_lstm(jax.random.key(3)))
  p = jnp.array([1.0, -2.0])
  g = jnp.array([0.5, 0.5])
  updates, state = jax.jit(tx.update)(g, tx.init(p), p, value=1.0)
  # f = sigmoid(4..6) and i = sigmoid(-5..-4), up to the +-0.01 weights.
  assert np.all((state.forget > 0.98) & (state.forget < 0.998))
  assert np.all((state.input > 0.006) & (state.input < 0.019))
  np.testing.assert_allclose(
    updates, (state.forget - 1) * p - state.input * g, rtol=1e-5
  )


@pytest.mark.parametrize("which", ["meta_lstm", "lstm_optimizer"])
def test_state_structure_shapes_and_dtypes_kept_under_jit(which):
  key = jax.random.key(0)
  tx = (
    meta_lstm(init_meta_lstm(key, 5))
    if which == "meta_lstm"
    else lstm_optimizer(init_lstm_optimizer(key, 5))
  )
  params = {
    "w": jnp.ones((3, 2)),
    "b": jnp.zeros((2,)),
    "nested": {"s": jnp.ones(())},
  }
  state = tx.init(params)
  grads = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
  update = jax.jit(
    lambda g, s, p: (
      tx.update(g, s, p, value=jnp.float32(1.0))
      if which == "meta_lstm"
      else tx.update(g, s, p)
    )
  )
  updates, new_state = update(grads, state, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
  chex.assert_tree_all_finite(new_state)
  assert jax.tree.leaves(new_state.hidden)[0].shape == (9, 5)  # 6 + 2 + 1


def test_meta_lstm_needs_params_and_loss():
  tx = meta_lstm(init_meta_lstm(jax.random.key(0)))
  p = jnp.ones(2)
  with pytest.raises(ValueError, match="value=loss"):
    tx.update(p, tx.init(p), p)
  with pytest.raises(ValueError, match="parameters"):
    tx.update(p, tx.init(p), None, value=1.0)


class TinyMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))


def test_meta_lstm_trains_a_flax_model_outside_meta_learning():
  """optax.chain with the (untrained) Meta-Learner LSTM lowers a regression
  loss: it is an ordinary optax optimizer."""
  rng = np.random.default_rng(0)
  x = rng.uniform(-2, 2, (64, 1)).astype(np.float32)
  y = np.sin(x)
  model = TinyMLP()
  params = model.init(jax.random.key(0), x)
  # A larger step than the paper's initial i ~ 0.01, to see progress soon.
  theta = init_meta_lstm(jax.random.key(1))
  theta["input"]["b"] = jnp.float32(-1.5)
  theta["forget"]["b"] = jnp.float32(8.0)
  tx = optax.chain(optax.clip_by_global_norm(1.0), meta_lstm(theta))
  loss_fn = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)

  @jax.jit
  def step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params, value=loss)
    return optax.apply_updates(params, updates), state, loss

  state = tx.init(params)
  first = float(loss_fn(params))
  for _ in range(150):
    params, state, _ = step(params, state)
  assert float(loss_fn(params)) < 0.3 * first


def test_meta_gradient_wrt_theta_matches_finite_differences():
  with jax.enable_x64(True):
    learner = meta_learner_lstm(
      TinyMLP(), inner_steps=2, first_order=False, hidden=3, task="regression"
    )
    rng = np.random.default_rng(0)
    ep = sine_episode(rng.uniform(-2, 2, (6, 1)))
    meta = learner.init(jax.random.key(0), ep)
    meta["inner"] = random_theta(jax.random.key(5), 3)
    meta = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), meta)

    def query_loss(inner):
      m = {"params": meta["params"], "inner": inner}
      adapted = learner.adapt(m, ep.support, None)
      return learner.loss(learner.predict(m, adapted, ep.query_x), ep.query_y)

    numeric = check_gradient_by_finite_differences(
      jax.jit(query_loss), meta["inner"], rng
    )
    assert abs(numeric) > 1e-6  # the direction matters


def test_meta_learner_lstm_first_order_drops_only_the_inputs_gradient():
  learner = meta_learner_lstm(
    TinyMLP(), inner_steps=2, hidden=3, task="regression"
  )
  second = meta_learner_lstm(
    TinyMLP(), inner_steps=2, hidden=3, first_order=False, task="regression"
  )
  ep = sine_episode(np.linspace(-1, 1, 6)[:, None].astype(np.float32))
  meta = learner.init(jax.random.key(0), ep)
  meta["inner"] = random_theta(jax.random.key(2), 3)

  def grads(l):
    def f(m):
      adapted = l.adapt(m, ep.support, None)
      return l.loss(l.predict(m, adapted, ep.query_x), ep.query_y)

    return jax.jit(jax.grad(f))(meta)

  g1, g2 = grads(learner), grads(second)
  for g in (g1, g2):  # theta gets a gradient either way
    assert float(optax.tree.norm(g["inner"])) > 0
  assert not np.allclose(
    jax.flatten_util.ravel_pytree(g1)[0], jax.flatten_util.ravel_pytree(g2)[0]
  )


def test_lstm_optimizer_update_by_hand():
  hidden = 2
  theta = randomized(
    init_lstm_optimizer(jax.random.key(0), hidden), jax.random.key(1)
  )
  th = jax.tree.map(lambda a: np.asarray(a, np.float64), theta)
  g = np.array([0.3, -1e-7, 2.0])
  tx = lstm_optimizer(theta, output_scale=0.1)
  updates, _ = jax.jit(tx.update)(
    jnp.asarray(g, jnp.float32), tx.init(jnp.zeros(3))
  )
  for k in range(3):
    x = np_preprocess(g[k])
    for w in th["layers"]:
      x, _ = np_lstm(w, x, np.zeros(hidden), np.zeros(hidden))
    want = 0.1 * (x @ th["out"]["w"] + th["out"]["b"])
    np.testing.assert_allclose(updates[k], want, rtol=2e-5, atol=1e-7)


def test_unrolled_meta_training_learns_to_optimize_quadratics():
  tasks = lo.QuadraticTasks(dim=4)
  theta0 = init_lstm_optimizer(jax.random.key(0), hidden=8)
  before = lo.evaluate_optimizer(
    lstm_optimizer(theta0), tasks, steps=20, num_tasks=64, seed=9
  )
  # Output weights start at zero: the untrained optimizer does nothing.
  np.testing.assert_allclose(before[:, -1], before[:, 0], rtol=1e-6)
  params, data = tasks.sample(np.random.default_rng(9), 64)
  direct = np.sum(
    (np.einsum("nij,nj->ni", data["w"], params) - data["y"]) ** 2, -1
  )
  np.testing.assert_allclose(before[:, 0], direct, rtol=1e-4)
  theta, history = lo.meta_train_optimizer(
    lstm_optimizer,
    theta0,
    tasks,
    outer_opt=optax.adam(3e-3),
    num_steps=60,
    horizon=20,
    unroll_steps=10,
    batch_size=32,
    seed=0,
  )
  assert len(history) == 60 and np.mean(history[-10:]) < np.mean(history[:10])
  after = lo.evaluate_optimizer(
    lstm_optimizer(theta), tasks, steps=20, num_tasks=64, seed=9
  )
  assert np.mean(after[:, -1]) < 0.5 * np.mean(after[:, 0])


def test_tune_learning_rate_picks_the_lowest_final_loss():
  tasks = lo.QuadraticTasks(dim=3)
  best, finals = lo.tune_learning_rate(
    optax.sgd, tasks, [1e-4, 0.05, 10.0], steps=10, num_tasks=16
  )
  assert finals[10.0] == np.inf  # diverged
  assert best == 0.05 and finals[0.05] < finals[1e-4]
  with pytest.raises(ValueError, match="multiple of unroll_steps"):
    lo.meta_train_optimizer(
      lstm_optimizer,
      init_lstm_optimizer(jax.random.key(0)),
      tasks,
      outer_opt=optax.adam(1e-3),
      num_steps=1,
      horizon=10,
      unroll_steps=3,
    )


def test_learned_optimizer_binary_smoke(tmp_path):
  from experiments import learned_optimizer  # pylint: disable=g-import-not-at-top
  from experiments.configs import l2l_quadratic  # pylint: disable=g-import-not-at-top

  config = l2l_quadratic.get_config("smoke")
  results = learned_optimizer.run(config, str(tmp_path))
  assert (tmp_path / "theta.msgpack").stat().st_size > 0
  assert len(results["meta_training_loss"]) == config.num_steps
  curves = results["mean_loss_curves"]
  assert len(curves) == 4 and set(results["tuned"]) == {
    "sgd",
    "momentum",
    "adam",
  }
  for tuned in results["tuned"].values():
    assert tuned["lr"] in config.lr_grid
  # Every optimizer starts from the same held-out tasks.
  starts = {round(c[0], 4) for c in curves.values()}
  assert len(starts) == 1
  assert all(len(c) == 2 * config.horizon + 1 for c in curves.values())
  with pytest.raises(ValueError, match="quadratic"):
    config.task = "rosenbrock"
    learned_optimizer.run(config, str(tmp_path))


def test_lstm_optimizer_as_a_maml_inner_optimizer():
  """Andrychowicz's optimizer plugs into `maml` like any inner optimizer; its
  weights are meta-parameters that the outer gradient reaches."""
  from metajax.learners.maml import maml  # pylint: disable=g-import-not-at-top

  learner = maml(
    TinyMLP(),
    inner_steps=2,
    task="regression",
    inner_opt_fn=lstm_optimizer,
    inner_hparams=lambda _: init_lstm_optimizer(jax.random.key(0), 4),
  )
  ep = sine_episode(np.linspace(-1, 1, 6)[:, None].astype(np.float32))
  meta = learner.init(jax.random.key(1), ep)

  @jax.jit
  def query_loss(m):
    adapted = learner.adapt(m, ep.support, None)
    return learner.loss(learner.predict(m, adapted, ep.query_x), ep.query_y)

  grads = jax.grad(query_loss)(meta)
  # The output layer starts at zero, so only its weights get a gradient at
  # first, and adapting changes nothing yet.
  assert float(jnp.abs(grads["inner"]["out"]["w"]).sum()) > 0
  meta["inner"]["out"]["w"] = jnp.full((4,), 0.3)
  adapted = jax.jit(learner.adapt)(meta, ep.support, None)
  assert not np.allclose(
    jax.flatten_util.ravel_pytree(adapted)[0],
    jax.flatten_util.ravel_pytree(meta["params"])[0],
  )
  chex.assert_trees_all_equal_shapes_and_dtypes(adapted, meta["params"])


def test_meta_training_divergence_is_reported():
  tasks = lo.QuadraticTasks(dim=3)
  with pytest.raises(
    FloatingPointError, match="meta-loss became .* at outer step 0"
  ):
    lo.meta_train_optimizer(
      lambda _: optax.sgd(1e3),
      {"unused": jnp.zeros(())},
      tasks,
      outer_opt=optax.adam(1e-3),
      num_steps=2,
      horizon=20,
      unroll_steps=20,
      batch_size=2,
      first_order=True,
    )
