"""R2-D2 and LR-D2: the solvers and the learners against numpy references."""

import jax
import numpy as np
import pytest

from metajax.learners.r2d2 import (
  logistic_weights,
  lrd2,
  r2d2,
  ridge_weights,
)
from tests.test_metric_learners import Flatten, float_episode


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def numpy_ridge(x, y, lam):
  """The primal solution (x^T x + lam I)^-1 x^T y, in float64."""
  x, y = np.float64(x), np.float64(y)
  return np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1])) @ x.T @ y


def numpy_newton(x, y, lam, steps):
  """Primal Newton steps on sum_i logloss + lam/2 |w|^2, from w = 0."""
  x, y = np.float64(x), np.float64(y)
  w = np.zeros((x.shape[1], y.shape[1]))
  for c in range(y.shape[1]):
    for _ in range(steps):
      mu = sigmoid(x @ w[:, c])
      grad = x.T @ (mu - y[:, c]) + lam * w[:, c]
      hess = x.T @ ((mu * (1 - mu))[:, None] * x) + lam * np.eye(x.shape[1])
      w[:, c] -= np.linalg.solve(hess, grad)
  return w


def with_ones(x):
  return np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1)


@pytest.mark.parametrize("n,d", [(6, 10), (12, 5)])
@pytest.mark.parametrize("woodbury", [None, True, False])
def test_ridge_weights_against_numpy_primal(n, d, woodbury):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, d)).astype(np.float32)
  y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
  w = ridge_weights(x, y, 0.7, woodbury=woodbury)
  np.testing.assert_allclose(w, numpy_ridge(x, y, 0.7), rtol=1e-4, atol=1e-5)


def test_r2d2_logits_against_numpy():
  ep = float_episode(ways=3, shots=2, dim=8)  # n = 6 < D + 1 = 9: Woodbury
  learner = r2d2(
    Flatten(), ways=3, lambda_init=0.3, alpha_init=2.5, beta_init=-0.4
  )
  params = learner.init(jax.random.key(0), ep)
  w = learner.adapt(params, ep.support, None)
  logits = learner.predict(params, w, ep.query_x)
  x, q = with_ones(ep.support_x), with_ones(ep.query_x)
  expected_w = numpy_ridge(x, np.eye(3)[ep.support_y], 0.3)
  np.testing.assert_allclose(w, expected_w, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(
    logits, 2.5 * q @ expected_w - 0.4, rtol=1e-4, atol=1e-4
  )
  # Without the bias feature: the paper's W = X^T (X X^T + lambda I)^-1 Y.
  plain = r2d2(Flatten(), ways=3, lambda_init=0.3, fit_bias=False)
  w = plain.adapt(plain.init(jax.random.key(0), ep), ep.support, None)
  expected_w = numpy_ridge(ep.support_x, np.eye(3)[ep.support_y], 0.3)
  np.testing.assert_allclose(w, expected_w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [1, 3])
def test_logistic_weights_against_primal_newton(steps):
  rng = np.random.default_rng(1)
  x = rng.standard_normal((8, 12)).astype(np.float32)
  y = np.eye(4, dtype=np.float32)[np.repeat(np.arange(4), 2)]
  w = logistic_weights(x, y, 0.5, steps)
  expected = numpy_newton(x, y, 0.5, steps)
  np.testing.assert_allclose(w, expected, rtol=1e-3, atol=1e-4)


def test_logistic_weights_minimize_the_regularized_loss():
  """After enough Newton steps the gradient of the objective is ~0, and
  plain gradient descent in numpy reaches the same weights."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((6, 9)).astype(np.float32) / 2
  y = np.eye(3, dtype=np.float32)[np.repeat(np.arange(3), 2)]
  lam = 0.8
  w = np.float64(logistic_weights(x, y, lam, 10))
  x64 = np.float64(x)
  grad = x64.T @ (sigmoid(x64 @ w) - y) + lam * w
  assert np.abs(grad).max() < 1e-4
  w_gd = np.zeros_like(w)
  for _ in range(3000):
    w_gd -= 0.2 * (x64.T @ (sigmoid(x64 @ w_gd) - y) + lam * w_gd)
  np.testing.assert_allclose(w, w_gd, atol=1e-4)


def test_lrd2_logits_against_numpy():
  ep = float_episode(ways=3, shots=2, dim=8)
  learner = lrd2(
    Flatten(),
    ways=3,
    newton_steps=4,
    lambda_init=0.6,
    alpha_init=1.5,
    beta_init=0.2,
  )
  params = learner.init(jax.random.key(0), ep)
  logits = learner.predict(
    params, learner.adapt(params, ep.support, None), ep.query_x
  )
  x, q = with_ones(ep.support_x), with_ones(ep.query_x)
  w = numpy_newton(x, np.eye(3)[ep.support_y], 0.6, 4)
  np.testing.assert_allclose(logits, 1.5 * q @ w + 0.2, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("factory", [r2d2, lrd2])
def test_lambda_gradient_against_finite_differences(factory):
  ep = float_episode(ways=3, shots=2, queries=3, dim=8, seed=4)
  learner = factory(Flatten(), ways=3, lambda_init=0.5, alpha_init=3.0)
  params = learner.init(jax.random.key(0), ep)

  def loss(log_lambda):
    p = dict(params, head=dict(params["head"], log_lambda=log_lambda))
    state = learner.adapt(p, ep.support, None)
    return learner.loss(learner.predict(p, state, ep.query_x), ep.query_y)

  log_lambda = params["head"]["log_lambda"]
  np.testing.assert_allclose(log_lambda, np.log(0.5), rtol=1e-6)
  grad = jax.grad(lambda p: loss(p["head"]["log_lambda"]))(params)
  analytic = float(grad["head"]["log_lambda"])
  eps = 1e-2
  numeric = (float(loss(log_lambda + eps)) - float(loss(log_lambda - eps))) / (
    2 * eps
  )
  assert abs(analytic) > 1e-3  # lambda matters to this loss
  np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=1e-4)
  # d/d lambda = d/d log(lambda) / lambda: the positive parametrization.
  dlam = 1e-3
  numeric_lam = (
    float(loss(np.log(0.5 + dlam))) - float(loss(np.log(0.5 - dlam)))
  ) / (2 * dlam)
  np.testing.assert_allclose(analytic / 0.5, numeric_lam, rtol=2e-2)
