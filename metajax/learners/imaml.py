"""iMAML: MAML with implicit meta-gradients (Rajeswaran et al. 2019).

The inner problem is regularized toward the meta-parameters,

    phi*(theta) = argmin_phi  L_support(phi) + lam / 2 ||phi - theta||^2,

and solved approximately by steps of an optax transformation
(`metajax.inner.optimize`). Where phi* is a minimum, its Jacobian is
d phi* / d theta = (I + H / lam)^-1, H the Hessian of the support loss at
phi*; so the meta-gradient of a query loss is v with (I + H / lam) v = g,
g the query loss's gradient at phi. `implicit_solution` solves that system by
a fixed number of conjugate-gradient steps on Hessian-vector products (the
forward derivative of the support loss's gradient), inside a
`jax.custom_vjp` of the map theta -> phi: the trainer's `jax.grad` of the
query loss gets the implicit meta-gradient and never differentiates the
inner steps, whose memory is not kept (it does not grow with them).
"""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metajax import checks
from metajax import losses
from metajax.inner.loop import optimize
from metajax.learners.embedding import to_float
from metajax.types import Episode, Learner, Params

__all__ = ("imaml", "implicit_solution")

# (params, data) -> scalar: the inner problem's loss on one task's data.
DataLossFn = Callable[[Params, Any], jax.Array]


def implicit_solution(
  loss_fn: DataLossFn,
  *,
  lam: float,
  inner_opt: optax.GradientTransformation,
  inner_steps: int,
  cg_steps: int,
  cg_damping: float = 0.0,
) -> Callable[[Params, Any], Params]:
  """The proximal inner solution `(theta, data) -> phi`, differentiated
  implicitly.

  Forward: `inner_steps` updates of `inner_opt` from phi = theta on
  `loss_fn(phi, data) + lam / 2 ||phi - theta||^2`. Backward (a
  `jax.custom_vjp`): the cotangent g of phi becomes the theta-cotangent v
  that `cg_steps` conjugate-gradient steps from v = 0 give for
  `((1 + cg_damping) I + H / lam) v = g`, H the Hessian of
  `loss_fn(., data)` at phi (each step one Hessian-vector product,
  `jax.jvp` of `jax.grad`); `cg_steps=0` returns g itself (the first-order
  approximation). The inner steps are not differentiated: memory does not
  grow with them. `data` gets no gradient.

  Args:
    loss_fn: `(params, data) -> scalar`, twice differentiable in params.
    lam: the strength of the proximal term (> 0).
    inner_opt: the inner optax transformation.
    inner_steps: its number of updates (>= 0).
    cg_steps: conjugate-gradient steps of the backward pass (>= 0).
    cg_damping: added to the identity of the system (>= 0; 0 is the
      paper's system), which keeps it positive definite where H has
      eigenvalues below -lam.

  Returns:
    `solve(theta, data) -> phi`, a function of two pytrees.

  Example:
    The meta-gradient of a query loss through the inner solution::

      solve = implicit_solution(support_loss, lam=2.0,
                                inner_opt=optax.sgd(0.1), inner_steps=16,
                                cg_steps=5)
      grads = jax.grad(lambda t: query_loss(solve(t, support)))(theta)
  """
  lam = checks.positive("lam", lam)
  inner_steps = checks.integer("inner_steps", inner_steps, minimum=0)
  cg_steps = checks.integer("cg_steps", cg_steps, minimum=0)
  cg_damping = checks.number("cg_damping", cg_damping, low=0.0)

  def inner(theta, data):
    def proximal_loss(phi, _):
      return loss_fn(phi, data) + 0.5 * lam * optax.tree_utils.tree_norm(
        jax.tree.map(jnp.subtract, phi, theta), squared=True
      )

    return optimize(inner_opt, proximal_loss, theta, steps=inner_steps).params

  @jax.custom_vjp
  def solve(theta, data):
    return inner(theta, data)

  def solve_fwd(theta, data):
    phi = inner(theta, data)
    return phi, (phi, data)

  def solve_bwd(residuals, g):
    phi, data = residuals
    if cg_steps == 0:
      return g, None
    grad_fn = jax.grad(loss_fn)

    def matvec(v):
      hv = jax.jvp(lambda p: grad_fn(p, data), (phi,), (v,))[1]
      return jax.tree.map(
        lambda v_, h: (1.0 + cg_damping) * v_ + h / lam, v, hv
      )

    v, _ = jax.scipy.sparse.linalg.cg(
      matvec, g, tol=0.0, atol=0.0, maxiter=cg_steps
    )
    return v, None

  solve.defvjp(solve_fwd, solve_bwd)
  return solve


def imaml(
  model: nn.Module,
  *,
  lam: float = 2.0,
  inner_lr: float = 0.1,
  inner_steps: int = 16,
  inner_opt: Optional[optax.GradientTransformation] = None,
  cg_steps: int = 5,
  cg_damping: float = 0.0,
  task: str = "classification",
) -> Learner:
  """Implicit MAML: the regularized inner problem, the implicit meta-gradient.

  `adapt` takes `inner_steps` updates of `inner_opt` (default: gradient
  descent with step `inner_lr`, the paper's "iMAML, GD") from the
  meta-parameters theta on the support loss plus lam / 2 ||phi - theta||^2;
  the meta-gradient of the query loss after `adapt` is the implicit one,
  (I + H / lam)^-1 times the query gradient, by `cg_steps` conjugate-gradient
  steps (`implicit_solution`). Its memory does not grow with `inner_steps`
  (second-order MAML's does). The defaults are the paper's Omniglot
  settings: lam = 2, 16 inner steps of 0.1, 5 CG steps.

  Args:
    model: a flax module mapping float inputs [B, ...] to outputs [B, ...].
    lam: strength of the proximal term (> 0); small lam lets phi move far
      from theta, large lam keeps it near (and the Jacobian near I).
    inner_lr: step size of the default inner gradient descent.
    inner_steps: number of inner updates (>= 0).
    inner_opt: any optax transformation instead (e.g. Nesterov momentum,
      `optax.sgd(lr, momentum=0.9, nesterov=True)`).
    cg_steps: conjugate-gradient steps of the meta-gradient (>= 0; 0: the
      query gradient at phi itself, first order).
    cg_damping: solve ((1 + cg_damping) I + H / lam) v = g instead (>= 0; the
      paper's system is 0, its released code damps).
    task: "classification" (cross-entropy, accuracy) or "regression" (MSE).

  Returns:
    A `Learner` whose task state is the adapted weights.

  Example:
    Adapting to one task and predicting its queries::

      learner = imaml(Conv4(5), lam=2.0, inner_steps=16)
      params = learner.init(key, episode)
      adapted = learner.adapt(params, episode.support, key)
      logits = learner.predict(params, adapted, episode.query_x)

  References:
    Rajeswaran, Finn, Kakade & Levine, "Meta-Learning with Implicit
    Gradients", NeurIPS 2019.
  """
  inner_lr = checks.positive("inner_lr", inner_lr)
  loss_fn, metric_fn, metric_name = losses.for_task(task)

  def apply(params, x):
    return model.apply({"params": params}, x)

  def support_loss(params, support):
    return loss_fn(apply(params, support[0]), support[1])

  solve = implicit_solution(
    support_loss,
    lam=lam,
    inner_opt=optax.sgd(inner_lr) if inner_opt is None else inner_opt,
    inner_steps=inner_steps,
    cg_steps=cg_steps,
    cg_damping=cg_damping,
  )

  def init(key, episode: Episode):
    return model.init(key, to_float(episode.support_x))["params"]

  def adapt(meta_params, support, key):
    del key  # the inner loop is deterministic.
    return solve(meta_params, (to_float(support[0]), support[1]))

  def predict(meta_params, task_state, query_x):
    del meta_params  # the adapted weights are the whole predictor.
    return apply(task_state, to_float(query_x))

  return Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
  )
