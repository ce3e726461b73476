"""iMAML against closed forms, against unrolled differentiation, and its
memory against inner steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax import models
from metajax import step as step_lib
from metajax.inner.loop import optimize
from metajax.learners.imaml import imaml, implicit_solution
from metajax.learners.maml import maml
from metajax.types import Episode


def _spd(rng, d, low=0.5):
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  return (q * rng.uniform(low, 3.0, d)) @ q.T


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_quadratic_inner_solution_and_meta_gradient_closed_form(lam):
  """L_s(phi) = (phi - a)^T A (phi - a) / 2, L_q(phi) = b.phi + phi^T B phi / 2:
  phi* = (A + lam I)^-1 (A a + lam theta) and the meta-gradient is
  lam (A + lam I)^-1 (b + B phi*), in numpy."""
  rng = np.random.default_rng(0)
  d = 4
  a_mat, b_mat = _spd(rng, d), _spd(rng, d)
  a, b, theta = rng.normal(size=(3, d))

  def support_loss(phi, data):
    mat, center = data
    return 0.5 * (phi - center) @ mat @ (phi - center)

  def query_loss(phi):
    return b @ phi + 0.5 * phi @ b_mat @ phi

  solve = implicit_solution(
    support_loss,
    lam=lam,
    inner_opt=optax.sgd(0.2),
    inner_steps=400,
    cg_steps=d,  # exact on d dimensions
  )
  data = (jnp.asarray(a_mat, jnp.float32), jnp.asarray(a, jnp.float32))
  theta32 = jnp.asarray(theta, jnp.float32)
  phi = solve(theta32, data)
  grad = jax.grad(lambda t: query_loss(solve(t, data)))(theta32)

  eye = np.eye(d)
  phi_star = np.linalg.solve(a_mat + lam * eye, a_mat @ a + lam * theta)
  expected = lam * np.linalg.solve(a_mat + lam * eye, b + b_mat @ phi_star)
  np.testing.assert_allclose(phi, phi_star, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-4)
  # Not the first-order gradient (the query gradient at phi*).
  assert np.abs(expected - (b + b_mat @ phi_star)).max() > 0.05


def test_imaml_learner_meta_gradient_on_linear_regression():
  """A linear model under MSE has a quadratic support loss: the trainer's
  meta-gradient of two tasks is the mean of their closed forms (numpy)."""
  rng = np.random.default_rng(1)
  lam, n, m, d_in = 0.7, 10, 7, 3
  learner = imaml(
    nn.Dense(1),
    lam=lam,
    inner_lr=0.1,
    inner_steps=300,
    cg_steps=d_in + 1,
    task="regression",
  )
  episodes = [
    Episode(
      rng.normal(size=(n, d_in)).astype(np.float32),
      rng.normal(size=(n, 1)).astype(np.float32),
      rng.normal(size=(m, d_in)).astype(np.float32),
      rng.normal(size=(m, 1)).astype(np.float32),
    )
    for _ in range(2)
  ]
  batch = jax.tree.map(lambda *x: np.stack(x), *episodes)
  params = learner.init(jax.random.key(0), episodes[0])
  params = jax.tree.map(  # away from the init, so the bias matters too
    lambda p: p + 0.3 * rng.normal(size=p.shape).astype(np.float32), params
  )
  (loss, _), grads = step_lib.meta_gradient(
    learner, params, batch, jax.random.key(1)
  )

  theta = np.concatenate([params["kernel"][:, 0], params["bias"]])
  ones = lambda x: np.concatenate([x, np.ones((len(x), 1))], axis=1)
  expected, losses = [], []
  for ep in episodes:
    xs, xq = ones(ep.support_x), ones(ep.query_x)
    hess = 2.0 / n * xs.T @ xs
    phi = np.linalg.solve(
      hess + lam * np.eye(d_in + 1),
      2.0 / n * xs.T @ ep.support_y[:, 0] + lam * theta,
    )
    residual = xq @ phi - ep.query_y[:, 0]
    g = 2.0 / m * xq.T @ residual
    expected.append(lam * np.linalg.solve(hess + lam * np.eye(d_in + 1), g))
    losses.append(np.mean(residual**2))
  expected = np.mean(expected, axis=0)
  np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-4)
  np.testing.assert_allclose(
    grads["kernel"][:, 0], expected[:d_in], rtol=1e-3, atol=1e-5
  )
  np.testing.assert_allclose(grads["bias"], expected[d_in:], rtol=1e-3)


class TanhMLP(nn.Module):
  """2 -> 8 -> 1 with tanh: a smooth loss, whose Hessian the implicit
  gradient needs (gradient descent on a ReLU net can settle into a 2-cycle
  across a kink, where no Hessian describes it)."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(jnp.tanh(nn.Dense(8)(x)))


def _mlp_problem(model=None):
  rng = np.random.default_rng(2)
  model = TanhMLP() if model is None else model
  x = rng.normal(size=(12, 2)).astype(np.float32)
  episode = Episode(
    x,
    np.sin(x.sum(1, keepdims=True)),
    rng.normal(size=(9, 2)).astype(np.float32),
    rng.normal(size=(9, 1)).astype(np.float32),
  )
  params = model.init(jax.random.key(3), x)["params"]
  return model, episode, params


def test_implicit_gradient_agrees_with_unrolled_differentiation():
  """On a small MLP whose regularized inner problem converges, the implicit
  meta-gradient is the gradient through the unrolled inner steps (the
  paper's claim), and not the first-order one."""
  model, ep, params = _mlp_problem()
  lam, lr, steps = 2.0, 0.05, 150

  def mse(p, x, y):
    return jnp.mean((model.apply({"params": p}, x) - y) ** 2)

  def unrolled(theta):
    def prox(phi, _):
      sq = sum(
        jnp.sum((u - t) ** 2)
        for u, t in zip(jax.tree.leaves(phi), jax.tree.leaves(theta))
      )
      return mse(phi, ep.support_x, ep.support_y) + 0.5 * lam * sq

    phi = optimize(optax.sgd(lr), prox, theta, steps=steps).params
    return mse(phi, ep.query_x, ep.query_y)

  def implicit(theta, cg_steps):
    learner = imaml(
      model,
      lam=lam,
      inner_lr=lr,
      inner_steps=steps,
      cg_steps=cg_steps,
      task="regression",
    )
    phi = learner.adapt(theta, ep.support, jax.random.key(0))
    return learner.loss(learner.predict(theta, phi, ep.query_x), ep.query_y)

  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
  reference = flat(jax.grad(unrolled)(params))
  got = flat(jax.grad(implicit)(params, 20))
  first_order = flat(jax.grad(implicit)(params, 0))
  scale = np.linalg.norm(reference)
  assert np.linalg.norm(got - reference) < 1e-3 * scale
  assert np.linalg.norm(first_order - reference) > 2e-2 * scale
  np.testing.assert_allclose(implicit(params, 20), unrolled(params), rtol=1e-5)


def _meta_gradient_bytes(learner, ep, params):
  def query_loss(p):
    phi = learner.adapt(p, ep.support, jax.random.key(0))
    return learner.loss(learner.predict(p, phi, ep.query_x), ep.query_y)

  compiled = jax.jit(jax.grad(query_loss)).lower(params).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_memory_does_not_grow_with_inner_steps():
  """XLA's temporaries of the meta-gradient: iMAML's the same at 5 and 50
  inner steps, second-order MAML's (through the unrolled steps) growing."""
  model, ep, params = _mlp_problem(models.MLP(1, hidden=(32,)))
  sizes = {}
  for name, factory in (("imaml", imaml), ("maml", maml)):
    for steps in (5, 50):
      learner = factory(
        model, inner_lr=0.05, inner_steps=steps, task="regression"
      )
      sizes[name, steps] = _meta_gradient_bytes(learner, ep, params)
  assert sizes["imaml", 50] <= sizes["imaml", 5], sizes
  assert sizes["maml", 50] > 3 * sizes["maml", 5], sizes
  assert sizes["maml", 50] > 3 * sizes["imaml", 50], sizes


def test_options_are_checked():
  for option, value in (
    ("lam", 0.0),
    ("inner_lr", float("nan")),
    ("inner_steps", -1),
    ("cg_steps", 1.5),
    ("cg_damping", -0.1),
  ):
    with pytest.raises(ValueError, match=option):
      imaml(nn.Dense(1), **{option: value})
