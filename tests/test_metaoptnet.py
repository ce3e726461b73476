"""MetaOptNet: the SVM solver against scipy's, its gradient against finite
differences of the exact solution, and the learner's logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from metajax.learners.metaoptnet import (
  crammer_singer_dual,
  metaoptnet,
  project_dual,
)
from tests.test_metric_learners import Flatten, float_episode


def problem(n_per_class, ways, dim, seed):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n_per_class * ways, dim))
  y = np.repeat(np.arange(ways), n_per_class)
  return x, y, np.eye(ways)[y]


def scipy_projection(v, onehot, c):
  """argmin ||a - v||^2 over {sum_k a_ik = 0, a_ik <= c onehot_ik}, by SLSQP."""
  n, m = v.shape
  res = optimize.minimize(
    lambda a: 0.5 * np.sum((a - v.ravel()) ** 2),
    np.zeros(n * m),
    jac=lambda a: a - v.ravel(),
    constraints=[{"type": "eq", "fun": lambda a: a.reshape(n, m).sum(1)}],
    bounds=[(None, b) for b in (c * onehot).ravel()],
    method="SLSQP",
    options={"ftol": 1e-14, "maxiter": 1000},
  )
  assert res.success, res.message
  return res.x.reshape(n, m)


def scipy_primal_svm(x, y, c):
  """The Crammer-Singer primal's W [D, ways] by SLSQP on its epigraph form:
  min 1/2 ||W||^2 + c sum_i xi_i, xi_i >= 1[k != y_i] + x_i (w_k - w_y_i)."""
  n, d = x.shape
  m = int(y.max()) + 1

  def split(z):
    return z[: d * m].reshape(d, m), z[d * m :]

  def margins(z):  # >= 0 for every (i, k)
    w, xi = split(z)
    s = x @ w
    return (
      xi[:, None]
      - (y[:, None] != np.arange(m))
      - s
      + s[np.arange(n), y][:, None]
    ).ravel()

  res = optimize.minimize(
    lambda z: 0.5 * np.sum(split(z)[0] ** 2) + c * np.sum(split(z)[1]),
    np.concatenate([np.zeros(d * m), np.ones(n)]),
    constraints=[{"type": "ineq", "fun": margins}],
    method="SLSQP",
    options={"ftol": 1e-14, "maxiter": 2000},
  )
  assert res.success, res.message
  return split(res.x)[0]


def primal_objective(w, x, y, c):
  s = x @ w
  m = w.shape[1]
  hinge = (y[:, None] != np.arange(m)) + s - s[np.arange(len(y)), y][:, None]
  return 0.5 * np.sum(w**2) + c * np.sum(hinge.max(1))


def test_project_dual_against_scipy():
  rng = np.random.default_rng(0)
  for c in (0.1, 1.0):
    v = rng.standard_normal((6, 4)) * 0.5
    onehot = np.eye(4)[rng.integers(0, 4, 6)]
    with jax.enable_x64(True):
      p = np.asarray(project_dual(v, onehot, c))
    np.testing.assert_allclose(p.sum(1), 0.0, atol=1e-12)
    assert np.all(p <= c * onehot + 1e-12)
    np.testing.assert_allclose(p, scipy_projection(v, onehot, c), atol=1e-6)


@pytest.mark.parametrize(
  "n_per_class,ways,dim,c",
  [(2, 3, 5, 0.1), (1, 4, 6, 1.0), (3, 3, 4, 0.5)],  # the last: n > D
)
def test_svm_against_scipy_primal(n_per_class, ways, dim, c):
  x, y, onehot = problem(n_per_class, ways, dim, seed=n_per_class + ways)
  with jax.enable_x64(True):
    a = np.asarray(crammer_singer_dual(x @ x.T, onehot, c, 2000))
  # Dual feasible; the weights the primal's; no duality gap.
  np.testing.assert_allclose(a.sum(1), 0.0, atol=1e-12)
  assert np.all(a <= c * onehot + 1e-12)
  w = x.T @ a
  w_ref = scipy_primal_svm(x, y, c)
  np.testing.assert_allclose(w, w_ref, atol=1e-5)
  dual = 0.5 * np.sum(w**2) - np.sum(a * onehot)
  assert abs(primal_objective(w, x, y, c) + dual) < 1e-8
  assert primal_objective(w, x, y, c) <= primal_objective(w_ref, x, y, c) + 1e-9
  # Few steps are not there yet; the solver iterates toward it.
  with jax.enable_x64(True):
    early = x.T @ np.asarray(crammer_singer_dual(x @ x.T, onehot, c, 2))
  assert np.abs(early - w_ref).max() > 1e-3


def exact_logits(x, onehot, q, c, active):
  """Query logits of the dual's solution with the active bounds `active`
  [n, ways] (bool) held fixed: the equality-constrained QP over the free
  variables, by its KKT linear system in numpy."""
  n, m = onehot.shape
  hess = np.kron(x @ x.T, np.eye(m))
  eq = np.kron(np.eye(n), np.ones((1, m)))
  fixed = active.ravel()
  free = ~fixed
  bound = (c * onehot).ravel()
  kkt = np.block(
    [[hess[free][:, free], eq[:, free].T], [eq[:, free], np.zeros((n, n))]]
  )
  rhs = np.concatenate(
    [
      onehot.ravel()[free] - hess[free][:, fixed] @ bound[fixed],
      -eq[:, fixed] @ bound[fixed],
    ]
  )
  a = bound.copy()
  a[free] = np.linalg.solve(kkt, rhs)[: free.sum()]
  return q @ x.T @ a.reshape(n, m)


def test_gradient_against_finite_differences_of_the_exact_solution():
  """d/dX of a function of the query logits (unrolled solver, in float64)
  against central differences of (a) the exact SVM solution, by its KKT
  system on the solution's active set, and (b) the same unrolled solver."""
  x, _, onehot = problem(2, 3, 8, seed=5)
  q = np.random.default_rng(6).standard_normal((4, 8))
  r = np.random.default_rng(7).standard_normal((4, 3))
  c = 0.3

  def f(x, steps):
    a = crammer_singer_dual(x @ x.T, onehot, c, steps)
    return jnp.sum(r * (q @ x.T @ a))

  with jax.enable_x64(True):
    a = np.asarray(crammer_singer_dual(x @ x.T, onehot, c, 3000))
    grads = {s: np.asarray(jax.grad(f)(x, s)) for s in (20, 100, 3000)}
    f20 = jax.jit(lambda x: f(x, 20))
    own = central_differences(lambda z: float(f20(z)), x, 1e-6)
  # The active set, with strict complementarity (else (a) is not smooth).
  bound = c * onehot
  active = bound - a < 1e-9
  assert 0 < active.sum() < active.size
  grad = (x @ x.T) @ a - onehot  # the dual's gradient at the solution
  nu = -np.where(active, -np.inf, grad).max(1, keepdims=True)
  assert np.all(np.abs(np.where(active, 0.0, grad + nu)) < 1e-7)
  assert np.all(np.where(active, -(grad + nu), 1.0) > 1e-3)
  assert np.all(np.where(active, 1.0, bound - a) > 1e-3)
  exact = central_differences(
    lambda z: np.sum(r * exact_logits(z, onehot, q, c, active)), x, 1e-6
  )
  assert np.abs(exact).max() > 1e-2
  np.testing.assert_allclose(
    grads[3000], exact, atol=1e-6 * np.abs(exact).max()
  )
  np.testing.assert_allclose(grads[20], own, atol=1e-6 * np.abs(own).max())
  # 100 steps (the default) already give the exact solution's gradient
  # here; 20 are not there yet.
  np.testing.assert_allclose(grads[100], exact, atol=1e-4 * np.abs(exact).max())
  assert np.abs(grads[20] - exact).max() > 1e-3 * np.abs(exact).max()


def central_differences(fn, x, eps):
  out = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[idx] = eps
    out[idx] = (fn(x + e) - fn(x - e)) / (2 * eps)
  return out


def test_metaoptnet_logits_against_the_primal_svm():
  ep = float_episode(ways=3, shots=2, dim=5, seed=3)
  learner = metaoptnet(
    Flatten(), ways=3, c_reg=0.2, solver_steps=500, scale_init=2.5
  )
  params = learner.init(jax.random.key(0), ep)
  w = learner.adapt(params, ep.support, None)
  logits = learner.predict(params, w, ep.query_x)
  x = np.float64(ep.support_x)
  w_ref = scipy_primal_svm(x, ep.support_y, 0.2)
  np.testing.assert_allclose(w, w_ref, atol=1e-4)
  np.testing.assert_allclose(
    logits, 2.5 * np.float64(ep.query_x) @ w_ref, rtol=1e-4, atol=1e-4
  )

  # The scale is a meta-parameter: the query loss's gradient reaches it.
  def loss(p):
    state = learner.adapt(p, ep.support, None)
    return learner.loss(learner.predict(p, state, ep.query_x), ep.query_y)

  assert abs(float(jax.grad(loss)(params)["head"]["scale"])) > 1e-4

  # The support set's gradient flows through adapt's solver: a directional
  # derivative against central differences (float32, as the learner runs).
  def support_loss(support_x):
    state = learner.adapt(params, (support_x, ep.support_y), None)
    return learner.loss(learner.predict(params, state, ep.query_x), ep.query_y)

  u = np.random.default_rng(4).standard_normal(ep.support_x.shape)
  analytic = float(np.sum(jax.grad(support_loss)(ep.support_x) * u))
  eps = 1e-3
  numeric = (
    float(support_loss(ep.support_x + eps * u))
    - float(support_loss(ep.support_x - eps * u))
  ) / (2 * eps)
  assert abs(analytic) > 1e-2
  np.testing.assert_allclose(analytic, numeric, rtol=1e-2)


@pytest.mark.parametrize(
  "option,value",
  [("c_reg", 0.0), ("solver_steps", 0), ("scale_init", float("nan"))],
)
def test_bad_options_are_named(option, value):
  with pytest.raises(ValueError, match=option):
    metaoptnet(Flatten(), ways=3, **{option: value})
