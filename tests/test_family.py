"""The gradient-based family: Meta-SGD, ANIL, Reptile, MAML++ options.

Closed forms use f(x) = t * x with one input sqrt(a) and target 0, so the
support and query losses are both L(t) = A t^2 / 2 with A = 2a.
"""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import maml_omniglot
from metajax import from_config
from metajax import models, runs
from metajax import step as step_lib
from metajax.inner import learned_sgd
from metajax.learners.maml import anil, maml, meta_sgd
from metajax.learners.reptile import carry_outer_opt, reptile, support_batches
from metajax.types import Episode
from tests.test_maml import Scalar, quadratic_episode

A_SMALL = 0.7
BIG_A = 2 * A_SMALL
T0 = 1.5


def query_loss_fn(learner, ep):
  def f(meta_params):
    adapted = learner.adapt(meta_params, ep.support, None)
    return learner.loss(
      learner.predict(meta_params, adapted, ep.query_x), ep.query_y
    )

  return f


def test_meta_sgd_meta_gradient_closed_form():
  lr = 0.3
  learner = meta_sgd(Scalar(), inner_lr=lr, inner_steps=1, task="regression")
  ep = quadratic_episode(A_SMALL)
  meta = learner.init(jax.random.key(0), ep)
  assert set(meta) == {"params", "inner"}
  np.testing.assert_allclose(meta["inner"]["t"], lr)
  grads = jax.grad(query_loss_fn(learner, ep))(meta)
  s = 1 - lr * BIG_A
  # L(t') with t' = t (1 - lr A): dL/dt = A t s^2; dL/dlr = A t' * (-A t).
  np.testing.assert_allclose(grads["params"]["t"], BIG_A * T0 * s**2, rtol=1e-5)
  np.testing.assert_allclose(
    grads["inner"]["t"], -(BIG_A**2) * T0**2 * s, rtol=1e-5
  )


def test_lslr_uses_one_rate_per_step():
  rates = {"t": jnp.array([0.1, 0.25])}
  learner = maml(
    Scalar(),
    inner_steps=2,
    task="regression",
    inner_opt_fn=lambda r: learned_sgd(r, per_step=True),
    inner_hparams=rates,
  )
  ep = quadratic_episode(A_SMALL)
  meta = learner.init(jax.random.key(0), ep)
  adapted = learner.adapt(meta, ep.support, None)
  np.testing.assert_allclose(
    adapted["t"], T0 * (1 - 0.1 * BIG_A) * (1 - 0.25 * BIG_A), rtol=1e-6
  )


def test_multi_step_loss_closed_form():
  alpha, w = 0.2, (0.3, 0.7)
  learner = maml(
    Scalar(),
    inner_lr=alpha,
    inner_steps=2,
    task="regression",
    multi_step_loss=w,
  )
  ep = quadratic_episode(A_SMALL)
  meta = learner.init(jax.random.key(0), ep)
  loss, _ = learner.task_loss(meta, ep, None)
  s = 1 - alpha * BIG_A
  expected = sum(
    wk * BIG_A * (T0 * s ** (k + 1)) ** 2 / 2 for k, wk in enumerate(w)
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  grad = jax.grad(lambda p: learner.task_loss(p, ep, None)[0])(meta)["t"]
  expected_grad = sum(
    wk * BIG_A * T0 * s ** (2 * (k + 1)) for k, wk in enumerate(w)
  )
  np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)


def test_reptile_update_by_hand():
  alpha, epsilon = 0.2, 0.5
  learner = reptile(
    Scalar(), inner_opt=optax.sgd(alpha), inner_steps=1, task="regression"
  )
  ep = quadratic_episode(A_SMALL)
  batch = jax.tree.map(lambda x: jnp.stack([x, x]), ep)
  opt = optax.sgd(epsilon)
  state = step_lib.init_train_state(learner, opt, jax.random.key(0), batch)
  state, _ = step_lib.make_meta_step(learner, opt)(
    state, batch, jax.random.key(1)
  )
  # adapted = t (1 - alpha A); theta <- theta - eps (theta - adapted).
  adapted = T0 * (1 - alpha * BIG_A)
  np.testing.assert_allclose(
    state.meta_params["t"], T0 - epsilon * (T0 - adapted), rtol=1e-6
  )


def test_reptile_carried_adam_by_hand():
  """carry_inner_state: each task's inner Adam (beta1 = 0) starts from the
  carried second moments and bias correction, and the next meta-step from their mean
  over the tasks, whatever the outer step size."""
  lr, b2, epsilon, steps = 0.1, 0.9, 0.5, 2
  learner = reptile(
    Scalar(),
    inner_lr=lr,
    inner_steps=steps,
    b2=b2,
    carry_inner_state=True,
    task="regression",
  )
  # The plain optimizer: the step programs apply the learner's
  # wrap_outer_opt (carry_outer_opt), so the statistics are set, not stepped.
  assert learner.wrap_outer_opt is carry_outer_opt
  opt = optax.sgd(epsilon)
  curvatures = (A_SMALL, 2.5)  # two tasks with other gradients
  batch = jax.tree.map(
    lambda *x: jnp.stack(x), *[quadratic_episode(a) for a in curvatures]
  )
  state = step_lib.init_train_state(learner, opt, jax.random.key(0), batch)
  step = step_lib.make_meta_step(learner, opt)
  theta, nu, count = T0, 0.0, 0
  for meta_step in range(2):
    state, _ = step(state, batch, jax.random.key(meta_step))
    adapted, nus = [], []
    for a in curvatures:  # L(t) = A t^2 / 2, so g = 2 a t
      t, v, n = theta, nu, count
      for _ in range(steps):
        g = 2 * a * t
        v, n = b2 * v + (1 - b2) * g * g, n + 1
        t -= lr * g / (np.sqrt(v / (1 - b2**n)) + 1e-8)
      adapted.append(t)
      nus.append(v)
    theta -= epsilon * (theta - np.mean(adapted))
    nu, count = np.mean(nus), count + steps
    meta = state.meta_params
    np.testing.assert_allclose(meta["params"]["t"], theta, rtol=1e-5)
    np.testing.assert_allclose(meta["inner_state"]["nu"]["t"], nu, rtol=1e-5)
    np.testing.assert_allclose(
      meta["inner_state"]["debias"], 1 - b2**count, rtol=1e-6
    )
  # Test-time adaptation starts from the carried statistics too: one step
  # from them is not a fresh Adam's first step (lr * sign(g)).
  one = reptile(
    Scalar(),
    inner_lr=lr,
    inner_steps=1,
    b2=b2,
    carry_inner_state=True,
    task="regression",
  )
  ep = quadratic_episode(A_SMALL)
  g = 2 * A_SMALL * theta
  v = b2 * nu + (1 - b2) * g * g
  expected = theta - lr * g / np.sqrt(v / (1 - b2 ** (count + 1)))
  np.testing.assert_allclose(
    one.adapt(meta, ep.support, None)["t"], expected, rtol=1e-5
  )
  assert abs(expected - (theta - lr * np.sign(g))) > 1e-3
  # From fresh statistics (at initialization) it is optax's Adam (beta1 = 0).
  config = family_config("reptile")
  config.inner_steps, config.inner_lr = 3, 1e-2
  batch = jax.tree.map(lambda x: np.stack([x]), tiny_episode())
  fresh_learner = from_config.build_learner(config)
  config.learner_kwargs.carry_inner_state = True
  carried_learner = from_config.build_learner(config)
  carried0 = step_lib.init_train_state(
    carried_learner, opt, jax.random.key(0), batch
  ).meta_params
  ep = tiny_episode()
  chex.assert_trees_all_close(
    carried_learner.adapt(carried0, ep.support, None),
    fresh_learner.adapt(carried0["params"], ep.support, None),
    rtol=1e-5,
    atol=1e-6,
  )
  with pytest.raises(ValueError, match="does not take an inner_opt"):
    reptile(Scalar(), inner_opt=optax.sgd(0.1), carry_inner_state=True)
  config = maml_omniglot.get_config("smoke")
  config.learner_kwargs.carry_inner_state = True
  with pytest.raises(ValueError, match="of 'maml'.*'carry_inner_state'"):
    from_config.validate(config)


def test_reptile_inner_mini_batches():
  """inner_batch_size: each inner step takes one mini-batch of the support
  set, shuffled passes over it without replacement (the paper's code)."""
  alpha, t0 = 0.1, 1.5
  xs, ys = np.array([1.0, 2.0]), np.array([1.0, 4.0])  # gradients of both signs
  ep = Episode(
    jnp.asarray(xs[:, None]),
    jnp.asarray(ys[:, None]),
    jnp.asarray(xs[:, None]),
    jnp.asarray(ys[:, None]),
  )

  def sgd(t, batches):  # MSE of f(x) = t x: d/dt = mean 2 x (t x - y)
    for b in batches:
      t = t - alpha * np.mean(2 * xs[b] * (t * xs[b] - ys[b]))
    return t

  def adapted(batch_size, key, steps=2, **kwargs):
    learner = reptile(
      Scalar(),
      inner_opt=optax.sgd(alpha),
      inner_steps=steps,
      inner_batch_size=batch_size,
      task="regression",
      **kwargs,
    )
    return float(learner.adapt({"t": jnp.asarray(t0)}, ep.support, key)["t"])

  whole = sgd(t0, [[0, 1], [0, 1]])
  np.testing.assert_allclose(adapted(None, None), whole, rtol=1e-6)
  # One example a step, each once per pass, in a shuffled order.
  orders = {(0, 1): sgd(t0, [[0], [1]]), (1, 0): sgd(t0, [[1], [0]])}
  seen = set()
  for k in range(8):
    got = adapted(1, jax.random.key(k))
    (order,) = [o for o, t in orders.items() if abs(t - got) < 1e-5]
    seen.add(order)
  assert seen == set(orders)  # both orders come up
  assert min(abs(t - whole) for t in orders.values()) > 1e-3
  # A batch longer than the set holds each example twice: the whole-set step.
  np.testing.assert_allclose(adapted(4, jax.random.key(0)), whole, rtol=1e-6)
  # The indices: passes of permutations, cut into batches.
  idx = np.asarray(support_batches(jax.random.key(3), 5, 3, 4)).reshape(-1)
  assert sorted(idx[:5]) == sorted(idx[5:10]) == list(range(5))
  # The carried Adam takes its steps on the mini-batches too.
  carried = reptile(
    Scalar(),
    inner_lr=0.1,
    inner_steps=1,
    inner_batch_size=1,
    carry_inner_state=True,
    task="regression",
  )
  meta = carried.init(jax.random.key(0), ep)
  one = [
    float(carried.adapt(meta, ep.support, jax.random.key(k))["t"])
    for k in range(8)
  ]
  # A fresh Adam's first step is lr * sign(g): sign(g) of each example.
  g = 2 * xs * (t0 * xs - ys)
  np.testing.assert_allclose(
    sorted(set(np.round(one, 5))), sorted(np.round(t0 - 0.1 * np.sign(g), 5))
  )
  with pytest.raises(ValueError, match="inner_batch_size must be"):
    reptile(Scalar(), inner_batch_size=0)
  with pytest.raises(ValueError, match="draws its mini-batches"):
    reptile(
      Scalar(),
      inner_opt=optax.sgd(alpha),
      inner_batch_size=1,
      task="regression",
    ).adapt({"t": jnp.asarray(t0)}, ep.support, None)
  # Config: Reptile only; the test-time size when given.
  config = maml_omniglot.get_config("smoke")
  config.inner_batch_size = 3
  with pytest.raises(ValueError, match="of 'maml'.*'inner_batch_size'"):
    from_config.validate(config)
  config = family_config("reptile")
  config.inner_batch_size = 0
  with pytest.raises(
    ValueError, match="inner_batch_size must be None or an integer >= 1, got 0"
  ):
    from_config.validate(config)
  config.update(
    dict(
      inner_steps=1,
      test_inner_steps=1,
      inner_lr=1e-2,
      inner_batch_size=3,
      test_inner_batch_size=1,
    )
  )
  from_config.validate(config)
  tiny = tiny_episode()  # 3 ways x 1 shot
  meta = from_config.build_learner(config).init(jax.random.key(0), tiny)
  by_batch = {
    b: reptile(
      from_config.build_model(config, 3),
      inner_lr=1e-2,
      inner_steps=1,
      inner_batch_size=b,
    ).adapt(meta, tiny.support, jax.random.key(5))
    for b in (1, 3)
  }
  for test, b in ((False, 3), (True, 1)):
    chex.assert_trees_all_close(
      from_config.build_learner(config, test=test).adapt(
        meta, tiny.support, jax.random.key(5)
      ),
      by_batch[b],
    )


def sine_episode(x):
  """Regression on sin: the first 3 rows of x [6, 1] support, the rest query."""
  return quadratic_episode(1.0)._replace(
    support_x=x[:3],
    support_y=np.sin(x[:3]),
    query_x=x[3:],
    query_y=np.sin(x[3:]),
  )


def check_gradient_by_finite_differences(f, params, rng, eps=1e-6, rtol=1e-5):
  """jax.grad(f) at params along a random direction against a central
  difference (run under jax.enable_x64). Returns the numeric derivative."""
  grads = jax.jit(jax.grad(f))(params)
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  direction = rng.standard_normal(flat.shape)
  numeric = (
    f(unravel(flat + eps * direction)) - f(unravel(flat - eps * direction))
  ) / (2 * eps)
  analytic = jnp.dot(jax.flatten_util.ravel_pytree(grads)[0], direction)
  np.testing.assert_allclose(analytic, numeric, rtol=rtol)
  return numeric


def test_adam_inner_meta_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    learner = maml(
      models.MLP(1, hidden=(4,)),
      inner_opt=optax.adam(0.05),
      inner_steps=3,
      task="regression",
    )
    rng = np.random.default_rng(0)
    ep = sine_episode(rng.uniform(-2, 2, (6, 1)))
    meta = jax.tree.map(
      lambda p: p.astype(jnp.float64), learner.init(jax.random.key(0), ep)
    )
    check_gradient_by_finite_differences(query_loss_fn(learner, ep), meta, rng)


def tiny_episode(ways=3, shots=1, queries=2, size=10):
  rng = np.random.default_rng(0)
  from metajax.types import Episode  # pylint: disable=g-import-not-at-top

  return Episode(
    rng.integers(0, 256, (ways * shots, size, size, 1), np.uint8),
    np.repeat(np.arange(ways, dtype=np.int32), shots),
    rng.integers(0, 256, (ways * queries, size, size, 1), np.uint8),
    np.repeat(np.arange(ways, dtype=np.int32), queries),
  )


def test_anil_adapts_only_the_head_and_trains_the_body():
  learner = anil(models.Conv4(3, filters=4), inner_lr=0.5, inner_steps=2)
  ep = tiny_episode()
  meta = learner.init(jax.random.key(0), ep)
  adapted = learner.adapt(meta, ep.support, None)
  for name in meta:
    changed = not all(
      np.array_equal(a, b)
      for a, b in zip(
        jax.tree.leaves(meta[name]), jax.tree.leaves(adapted[name])
      )
    )
    assert changed == (name == "head"), name
  grads = jax.grad(query_loss_fn(learner, ep))(meta)
  assert float(optax.tree.norm(grads["conv0"])) > 0


def check_meta_training(learner, batch):
  """Two jitted meta-steps: traced once, finite, params change, same tree.

  Returns the initial meta-parameters (numpy).
  """
  traces = []

  def counting(fn):
    def wrapped(*args):
      traces.append(1)
      return fn(*args)

    return wrapped

  counted = learner
  for name in ("adapt", "task_loss", "outer_grad"):
    if getattr(learner, name) is not None:
      counted = counted._replace(**{name: counting(getattr(learner, name))})
  opt = optax.adam(1e-3)
  state = step_lib.init_train_state(counted, opt, jax.random.key(0), batch)
  meta0 = jax.tree.map(np.array, state.meta_params)
  step = step_lib.make_meta_step(counted, opt)
  for i in range(2):
    state, metrics = step(state, batch, jax.random.key(i))
  assert len(traces) == 1  # one traced path, traced once over two calls
  assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
  chex.assert_tree_all_finite(state.meta_params)
  chex.assert_trees_all_equal_structs(state.meta_params, meta0)
  assert not all(
    np.array_equal(a, b)
    for a, b in zip(jax.tree.leaves(meta0), jax.tree.leaves(state.meta_params))
  )
  return meta0


LEARNER_VARIANTS = [
  dict(learner="maml"),
  dict(learner="fomaml"),
  dict(learner="meta_sgd"),
  dict(learner="meta_curvature", vectors="full"),
  dict(learner="anil"),
  dict(learner="reptile"),
  dict(learner="reptile", carry_inner_state=True),
  dict(learner="maml", lslr=True, lslr_steps=2, multi_step_loss=True),
  dict(learner="maml", first_order_steps=1),
  dict(learner="meta_learner_lstm", hidden=3),
  dict(learner="imaml", cg_steps=2),
]


def family_config(learner, **options):
  """A tiny config of `learner` with `options` (3-way, 10x10, Conv4 of 4
  filters, 2 inner steps and 3 at test time)."""
  config = maml_omniglot.get_config("smoke")
  config.update(dict(learner=learner, ways=3, image_size=10))
  config.model_kwargs.filters = 4
  config.learner_kwargs = ml_collections.ConfigDict(options)
  config.test_learner_kwargs = ml_collections.ConfigDict()
  config.update(dict(inner_steps=2, test_inner_steps=3, inner_lr=0.1))
  return config


@pytest.mark.parametrize(
  "overrides",
  LEARNER_VARIANTS,
  ids=lambda o: "-".join(str(v) for v in o.values()),
)
def test_family_contract(overrides):
  options = dict(overrides)
  config = family_config(options.pop("learner"), **options)
  learner = from_config.build_learner(config)
  test_learner = from_config.build_learner(config, test=True)
  assert (learner.warmup is not None) == ("first_order_steps" in options)
  ep = tiny_episode()
  batch = jax.tree.map(lambda x: np.stack([x, x]), ep)
  meta0 = check_meta_training(learner, batch)
  weights = meta0.get("params", meta0)
  for l in (learner, test_learner):
    adapted = l.adapt(meta0, ep.support, jax.random.key(0))
    chex.assert_trees_all_equal_shapes_and_dtypes(adapted, weights)
    logits = l.predict(meta0, adapted, ep.query_x)
    chex.assert_shape(logits, (6, 3))
    chex.assert_tree_all_finite(logits)


# FOMAML's and ANIL's configs differ from MAML's only in the learner, which the
# contract test covers; every config is validated by test_config_errors.
@pytest.mark.parametrize(
  "name",
  [
    "meta_sgd_omniglot",
    "meta_curvature_omniglot",
    "reptile_omniglot",
    "meta_lstm_omniglot",
    "meta_sgd_sinusoid",
    "imaml_omniglot",
  ],
)
def test_config_smoke_runs(name, tmp_path, omniglot_data_dir):
  import importlib  # pylint: disable=g-import-not-at-top

  config = importlib.import_module(f"experiments.configs.{name}").get_config(
    "smoke"
  )
  config.data_dir = omniglot_data_dir if "omniglot" in name else ""
  results = runs.train_and_evaluate(config, str(tmp_path))
  assert results["config"]["learner"] == config.learner
  assert results["episodes"] == config.eval_episodes
  assert np.isfinite(results["mean"])
  run = runs.load_run(str(tmp_path))
  assert ("inner" in run.meta_params) == (
    config.learner in ("meta_sgd", "meta_curvature", "meta_learner_lstm")
  )


def test_first_order_then_second_order(tmp_path):
  """first_order_steps=N: FOMAML's steps up to N, MAML's after."""
  from experiments.configs import maml_sinusoid  # pylint: disable=g-import-not-at-top

  def final_params(name, **overrides):
    config = maml_sinusoid.get_config("smoke")
    config.update(
      dict(num_steps=6, eval_episodes=2, val_every=0, checkpoint_every=3)
    )
    config.num_steps = overrides.pop("num_steps", config.num_steps)
    config.learner_kwargs.update(overrides)
    runs.train_and_evaluate(config, str(tmp_path / name))
    return jax.tree.leaves(runs.load_run(str(tmp_path / name)).meta_params)

  second = final_params("so", first_order_steps=0)
  first = final_params("fo", first_order=True)
  assert not all(np.array_equal(a, b) for a, b in zip(first, second))
  for a, b in zip(final_params("all_fo", first_order_steps=6), first):
    np.testing.assert_array_equal(a, b)
  mixed = final_params("mixed", first_order_steps=3)
  assert not all(np.array_equal(a, b) for a, b in zip(mixed, first))
  assert not all(np.array_equal(a, b) for a, b in zip(mixed, second))
  # The switch survives a restart between the phases.
  final_params("mixed_resumed", first_order_steps=3, num_steps=3)
  for a, b in zip(final_params("mixed_resumed", first_order_steps=3), mixed):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="first order throughout"):
    final_params("bad", first_order=True, first_order_steps=2)
