"""experiments.imaml_diagnosis on a quadratic task, where the answer is known."""

import jax.numpy as jnp
import numpy as np

from experiments import imaml_diagnosis


def _task(seed=0, dim=6):
  rng = np.random.default_rng(seed)
  scales = np.linspace(0.2, 3.0, dim)  # an anisotropic Hessian
  xs, xq = (rng.normal(size=(n, dim)) * scales for n in (20, 15))
  w = rng.normal(size=dim)
  ys, yq = xs @ w, xq @ w + rng.normal(size=15)
  xs, xq, ys, yq = map(jnp.asarray, (xs, xq, ys, yq))

  def support(p):
    return 0.5 * jnp.mean((xs @ p["w"] - ys) ** 2)

  def query(p):
    return 0.5 * jnp.mean((xq @ p["w"] - yq) ** 2)

  return support, query, {"w": jnp.asarray(rng.normal(size=dim))}


def test_a_solved_inner_problem_gives_the_exact_gradient_with_enough_cg():
  support, query, theta = _task()
  # lr (lam + largest eigenvalue, about 9) < 2: gradient descent converges.
  d = imaml_diagnosis.diagnose(
    support,
    query,
    theta,
    lam=1.0,
    inner_lr=0.05,
    inner_steps=2000,
    cg_steps=(0, 6),
  )
  assert d["grad_norm_phi"] < 1e-4 * d["grad_norm_theta"]
  assert d["loss_phi"] < d["loss_theta"]
  # The system is 6 x 6 and positive definite: 6 CG steps solve it exactly,
  # so the implicit gradient is the unrolled one; the first-order one is not.
  assert d["cos_cg6"] > 0.9999
  assert d["cos_cg0"] < 0.99


def test_an_unsolved_inner_problem_is_reported_and_the_gradients_differ():
  support, query, theta = _task()
  d = imaml_diagnosis.diagnose(
    support,
    query,
    theta,
    lam=1.0,
    inner_lr=0.01,
    inner_steps=2,
    cg_steps=(6,),
  )
  assert d["grad_norm_phi"] > 0.5 * d["grad_norm_theta"]
  assert d["cos_cg6"] < 0.99
