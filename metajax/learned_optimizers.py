"""Meta-training a learned optimizer by unrolled optimization on a task family.

Andrychowicz et al. (2016): the optimizer's weights theta are trained so that
the losses along an optimization trajectory are small,

    L(theta) = E_tasks [ mean_t f(params_t) ],
    params_{t+1} = params_t + update_theta(grad f(params_t), ...),

with truncated backpropagation through time: a trajectory of `horizon` steps
is cut into segments of `unroll` steps; each segment is one outer update, and
the parameters and optimizer state carry over between segments without
gradient. `first_order=True` (the paper's choice) treats the optimizee's
gradients as inputs with no gradient of their own.

Each trajectory is `metajax.inner.optimize`, the library's one inner loop.
Any `theta -> optax.GradientTransformation` works, e.g.
`metajax.inner.lstm_optimizer` or `metajax.inner.meta_lstm`; `evaluate_optimizer`
runs any optax optimizer (learned or stock) on held-out tasks, and
`tune_learning_rate` picks a hand-designed optimizer's step on tuning tasks,
so that comparisons are fair.
"""

from typing import Any, Callable, Dict, List, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax import checks
from metajax.inner.loop import optimize

Theta = Any
MakeOptimizer = Callable[[Theta], optax.GradientTransformation]


class QuadraticTasks(NamedTuple):
  """f(x) = ||W x - y||^2 with W [dim, dim], y [dim] and x_0 all N(0, 1).

  The task family of Andrychowicz et al.'s first experiment (dim 10).

  Attributes:
    dim: the dimension of x and y.
  """

  dim: int = 10

  def sample(self, rng: np.random.Generator, n: int) -> Tuple[Any, Any]:
    """`n` tasks: (initial params [n, dim], data {"w", "y"} with leading n)."""
    d = self.dim
    data = {
      "w": rng.standard_normal((n, d, d)).astype(np.float32),
      "y": rng.standard_normal((n, d)).astype(np.float32),
    }
    return rng.standard_normal((n, d)).astype(np.float32), data

  @staticmethod
  def loss(params, data):
    """`||W x - y||^2` of one task: x is `params`, W is `data["w"]` and y is
    `data["y"]`."""
    return jnp.sum(jnp.square(data["w"] @ params - data["y"]))


def _check_sizes(**sizes):
  for name, value in sizes.items():
    checks.integer(name, value, minimum=1)


def meta_train_optimizer(
  make_optimizer: MakeOptimizer,
  theta: Theta,
  tasks,
  *,
  outer_opt: optax.GradientTransformation,
  num_steps: int,
  horizon: int = 100,
  unroll_steps: int = 20,
  batch_size: int = 128,
  seed: int = 0,
  first_order: bool = True,
) -> Tuple[Theta, List[float]]:
  """Meta-trains `theta` by truncated unrolled optimization.

  Args:
    make_optimizer: theta -> optax transformation.
    theta: initial weights of the learned optimizer.
    tasks: a task family: `sample(rng, n) -> (params, data)` with a leading
      task axis, and `loss(params, data) -> scalar` for one task.
    outer_opt: the optimizer of theta.
    num_steps: outer updates (one per unrolled segment).
    horizon: optimization steps per trajectory; new tasks every
      horizon / unroll_steps segments.
    unroll_steps: steps per truncated segment.
    batch_size: tasks per outer update.
    seed: seed of the task stream.
    first_order: no gradient through the optimizee's gradients and losses.

  Returns:
    (meta-trained theta, meta-loss of each outer step).
  """
  _check_sizes(
    num_steps=num_steps,
    horizon=horizon,
    unroll_steps=unroll_steps,
    batch_size=batch_size,
  )
  first_order = checks.boolean("first_order", first_order)
  if horizon % unroll_steps:
    raise ValueError(
      f"horizon ({horizon}) must be a multiple of unroll_steps "
      f"({unroll_steps})."
    )
  segments = horizon // unroll_steps

  @jax.jit
  def outer_step(theta, outer_state, params, opt_state, data):
    def meta_loss(theta):
      tx = make_optimizer(theta)

      def one(p, s, d):  # the losses after each update are the meta-loss
        return optimize(
          tx,
          lambda q, _: tasks.loss(q, d),
          p,
          steps=unroll_steps,
          opt_state=s,
          first_order=first_order,
          observe=lambda q: tasks.loss(q, d),
        )

      new_params, new_state, losses = jax.vmap(one)(params, opt_state, data)
      return jnp.mean(losses), (new_params, new_state)

    (loss, carry), grads = jax.value_and_grad(meta_loss, has_aux=True)(theta)
    updates, outer_state = outer_opt.update(grads, outer_state, theta)
    return optax.apply_updates(theta, updates), outer_state, carry, loss

  @jax.jit
  def init_states(theta, params):
    return jax.vmap(make_optimizer(theta).init)(params)

  rng = np.random.default_rng(seed)
  outer_state = outer_opt.init(theta)
  history = []
  for step in range(num_steps):
    if step % segments == 0:
      params, data = tasks.sample(rng, batch_size)
      opt_state = init_states(theta, params)
    theta, outer_state, (params, opt_state), loss = outer_step(
      theta, outer_state, params, opt_state, data
    )
    loss = float(loss)
    if not np.isfinite(loss):
      raise FloatingPointError(
        f"The meta-loss became {loss} at outer step {step}; lower the outer "
        "learning rate or clip its gradients."
      )
    history.append(loss)
  return theta, history


def evaluate_optimizer(
  tx: optax.GradientTransformation,
  tasks,
  *,
  steps: int,
  num_tasks: int = 100,
  seed: int = 1,
) -> np.ndarray:
  """Losses of `tx` on `num_tasks` fresh tasks: [num_tasks, steps + 1]
  (column 0 is the initial loss)."""
  _check_sizes(steps=steps, num_tasks=num_tasks)
  params, data = tasks.sample(np.random.default_rng(seed), num_tasks)

  @jax.jit
  def run(params, data):
    def one(p, d):
      losses = optimize(
        tx,
        lambda q, _: tasks.loss(q, d),
        p,
        steps=steps,
        observe=lambda q: tasks.loss(q, d),
      ).per_step
      return jnp.concatenate([tasks.loss(p, d)[None], losses])

    return jax.vmap(one)(params, data)

  return np.asarray(run(params, data))


def tune_learning_rate(
  make: Callable[[float], optax.GradientTransformation],
  tasks,
  learning_rates: Sequence[float],
  *,
  steps: int,
  num_tasks: int = 100,
  seed: int = 2,
) -> Tuple[float, Dict[float, float]]:
  """The step of `make(lr)` with the lowest mean loss after `steps` steps on
  tuning tasks (a seed of their own). Diverged runs count as infinite.

  Returns:
    (best learning rate, {learning rate: mean final loss}).
  """
  if not learning_rates:
    raise ValueError("learning_rates is empty.")
  finals = {}
  for lr in learning_rates:
    final = evaluate_optimizer(
      make(lr), tasks, steps=steps, num_tasks=num_tasks, seed=seed
    )[:, -1]
    finals[float(lr)] = (
      float(np.mean(final)) if np.isfinite(final).all() else np.inf
    )
  return min(finals, key=finals.__getitem__), finals
