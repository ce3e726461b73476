"""R2-D2 and LR-D2 (Bertinetto et al. 2019), each a `Learner`.

Both fit a linear classifier on the support embeddings in closed form (or a
few Newton steps) inside `adapt`, and differentiate through the solver:

- R2-D2: ridge regression onto the one-hot labels, `W = argmin ||X W - Y||^2
  + lambda ||W||^2 = X^T (X X^T + lambda I)^-1 Y`, solved in the n x n space of
  the n support examples (the Woodbury identity; n = ways * shots is far
  below the feature dimension) or in the D x D space when n > D.
- LR-D2: one binary L2-regularized logistic regression per class (one
  class against the rest, as the paper's multi-class LR-D2), each fit by
  Newton steps (iteratively reweighted least squares) from w = 0, every step
  solved in the n x n space.

A query's logits are `alpha * x_q W + beta`, with lambda, alpha and beta
meta-learned beside the embedding.
"""

import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import checks
from metajax.learners.embedding import solved_head_learner
from metajax.types import Learner

__all__ = ("logistic_weights", "lrd2", "r2d2", "ridge_weights")


def ridge_weights(
  x: Any, y: Any, lam: Any, *, woodbury: Optional[bool] = None
) -> jax.Array:
  """[D, m] ridge regression weights of targets y [n, m] on features x [n, D].

  The minimizer of `||x W - y||^2 + lam ||W||^2`: `x^T (x x^T + lam I_n)^-1 y`
  (Woodbury, an n x n system) or `(x^T x + lam I_D)^-1 x^T y` (primal, a
  D x D system), the same matrix. `woodbury=None` picks the smaller system.
  """
  n, d = x.shape
  if woodbury is None:
    woodbury = n <= d
  if woodbury:
    gram = x @ x.T + lam * jnp.eye(n, dtype=x.dtype)
    return x.T @ jnp.linalg.solve(gram, y)
  cov = x.T @ x + lam * jnp.eye(d, dtype=x.dtype)
  return jnp.linalg.solve(cov, x.T @ y)


def logistic_weights(x: Any, y: Any, lam: Any, steps: int) -> jax.Array:
  """[D, m] weights of m binary logistic regressions after `steps` Newton steps.

  Column c of y [n, m] (0 or 1) is the c-th binary problem on features
  x [n, D]; each minimizes `sum_i log(1 + e^{eta_i}) - y_i eta_i + lam/2
  ||w||^2` with eta = x w, starting from w = 0. A Newton step is w <-
  (x^T S x + lam I)^-1 x^T S z with S = diag(mu (1 - mu)), mu = sigmoid(eta)
  and z = eta + (y - mu) / s; by the Woodbury identity this is w = x^T a with
  (S K + lam I) a = S eta + y - mu and K = x x^T, so w stays x^T a and only
  n x n systems are solved (the form without S^-1 stays finite when a
  sigmoid saturates).
  """
  n, m = y.shape
  k = x @ x.T
  eye = jnp.eye(n, dtype=x.dtype)

  def newton(a, _):
    eta = k @ a  # [n, m]
    mu = jax.nn.sigmoid(eta)
    s = mu * (1.0 - mu)
    systems = s.T[:, :, None] * k[None] + lam * eye  # [m, n, n]
    rhs = (s * eta + y - mu).T[:, :, None]  # [m, n, 1]
    return jnp.linalg.solve(systems, rhs)[:, :, 0].T, None

  a, _ = jax.lax.scan(newton, jnp.zeros((n, m), x.dtype), None, length=steps)
  return x.T @ a


def _closed_form_learner(
  embedding: nn.Module,
  ways: int,
  solve: Callable[[Any, Any, Any], Any],
  hparams: dict,
  fit_bias: bool,
) -> Learner:
  """The Learner around `solve(features, onehot, lam) -> W [D(+1), ways]`:
  logits alpha * z W + beta, lambda = exp(log_lambda)."""
  return solved_head_learner(
    embedding,
    ways,
    hparams,
    lambda head, x, onehot: solve(x, onehot, jnp.exp(head["log_lambda"])),
    lambda head, z, w: head["alpha"] * z @ w + head["beta"],
    fit_bias,
  )


def _hparams(lambda_init, alpha_init, beta_init) -> dict:
  """The head's meta-parameters, checked: log lambda (lambda > 0), alpha, beta."""
  lam = checks.positive("lambda_init", lambda_init)
  return {
    "log_lambda": math.log(lam),
    "alpha": checks.number("alpha_init", alpha_init),
    "beta": checks.number("beta_init", beta_init),
  }


def r2d2(
  embedding: nn.Module,
  *,
  ways: int,
  lambda_init: float = 1.0,
  alpha_init: float = 10.0,
  beta_init: float = 0.0,
  fit_bias: bool = True,
) -> Learner:
  """R2-D2: a ridge regression head solved in closed form on each support set.

  meta_params = {"embed": the embedding's params, "head": {"log_lambda",
  "alpha", "beta"}}. `adapt` embeds the support set (appending a constant 1
  feature if `fit_bias`) and solves W = X^T (X X^T + lambda I)^-1 Y for the
  one-hot labels Y (`ridge_weights`, by the Woodbury identity when the
  support set has fewer rows than features); `predict` returns `alpha *
  x_q W + beta`. The gradient of the query cross-entropy flows through the
  linear solve into the embedding and into lambda (kept positive as the
  exponential of `log_lambda`), alpha and beta.

  Where it follows the authors' code rather than the paper's text: the
  constant feature (W then has a bias row, regularized with the rest;
  `fit_bias=False` gives the paper's formula exactly) and alpha's initial
  value for Omniglot (10). Where it differs: lambda weighs the sum of the
  squared errors as in the paper's formula, while the authors' code divides
  X and Y by sqrt(n) (lambda times n here), and lambda is always learned
  (their code can keep it fixed).

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D], e.g.
      `Conv4(None)`.
    ways: classes per episode (support labels lie in 0..ways-1).
    lambda_init: the regularizer's initial value (> 0).
    alpha_init: the logits' initial scale.
    beta_init: the logits' initial bias.
    fit_bias: append a constant 1 to the features (a bias row in W).

  Returns:
    A `Learner` whose task state is W [D (+1), ways].

  Example::

    learner = r2d2(Conv4(None), ways=5)
    meta_params = learner.init(key, episode)
    w = learner.adapt(meta_params, episode.support, key)
    logits = learner.predict(meta_params, w, episode.query_x)

  References:
    Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with
    differentiable closed-form solvers", ICLR 2019.
  """
  ways = checks.integer("ways", ways, minimum=2)
  hparams = _hparams(lambda_init, alpha_init, beta_init)
  fit_bias = checks.boolean("fit_bias", fit_bias)
  return _closed_form_learner(embedding, ways, ridge_weights, hparams, fit_bias)


def lrd2(
  embedding: nn.Module,
  *,
  ways: int,
  newton_steps: int = 5,
  lambda_init: float = 1.0,
  alpha_init: float = 1.0,
  beta_init: float = 0.0,
  fit_bias: bool = True,
) -> Learner:
  """LR-D2: one-vs-rest logistic regression heads fit by Newton steps.

  meta_params as `r2d2`'s. `adapt` embeds the support set (with a constant 1
  feature if `fit_bias`) and fits, for each class, a binary L2-regularized
  logistic regression of "this class" against the rest by `newton_steps`
  Newton (IRLS) steps from w = 0, each an n x n linear system by the
  Woodbury identity (`logistic_weights`); `predict` returns `alpha * x_q W +
  beta`, the `ways` binary scores as the logits of a softmax, trained by the
  query cross-entropy through every Newton step.

  This is the paper's multi-class LR-D2 (one binary classifier per class,
  "1-vs-all"; its true multinomial form would need an n*ways system per
  step). The authors ran it with 1 and 5 Newton steps; their code leaves
  the scores unscaled (alpha = 1, beta = 0, the defaults here, learned
  here). Lambda as in `r2d2` (the logistic loss summed over the support set).

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D].
    ways: classes per episode (support labels lie in 0..ways-1).
    newton_steps: Newton steps per binary problem (>= 1).
    lambda_init: the regularizer's initial value (> 0).
    alpha_init: the logits' initial scale.
    beta_init: the logits' initial bias.
    fit_bias: append a constant 1 to the features (a bias row in W).

  Returns:
    A `Learner` whose task state is W [D (+1), ways].

  Example::

    learner = lrd2(Conv4(None), ways=5, newton_steps=5)

  References:
    Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with
    differentiable closed-form solvers", ICLR 2019.
  """
  ways = checks.integer("ways", ways, minimum=2)
  steps = checks.integer("newton_steps", newton_steps, minimum=1)
  hparams = _hparams(lambda_init, alpha_init, beta_init)
  fit_bias = checks.boolean("fit_bias", fit_bias)
  solve = lambda x, y, lam: logistic_weights(x, y, lam, steps)
  return _closed_form_learner(embedding, ways, solve, hparams, fit_bias)
