"""Reptile (Nichol, Achiam & Schulman 2018)."""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metajax import checks
from metajax.inner.carried_adam import CarriedAdamState, carried_adam
from metajax.inner.loop import InnerResult, optimize
from metajax.learners.embedding import to_float
from metajax.learners.maml import maml
from metajax.types import Learner

# meta_params["inner_state"] of a Reptile with carry_inner_state=True: the
# inner Adam's statistics, carried from task to task (not learned).
CARRIED = "inner_state"


def reptile(
  model: nn.Module,
  *,
  inner_lr: float = 1e-3,
  inner_steps: int = 5,
  inner_opt: Optional[optax.GradientTransformation] = None,
  carry_inner_state: bool = False,
  b2: float = 0.999,
  inner_batch_size: Optional[int] = None,
  task: str = "classification",
) -> Learner:
  """Reptile as a `Learner` with an `outer_grad`.

  `adapt` is `inner_steps` plain steps of `inner_opt` (default: Adam with
  beta1 = 0 and step `inner_lr`, as in the paper) on the support set, with no
  differentiation through them. For meta-training, each task contributes the
  outer "gradient" theta - adapted; the trainer averages it over the
  meta-batch and hands it to the outer optimizer, so `optax.sgd(epsilon)`
  gives the paper's theta <- theta + epsilon * mean(adapted - theta).

  Each inner step takes the whole support set, or with `inner_batch_size=b`
  a mini-batch of b of its examples, as the paper's code does: shuffled
  passes over the support set one after another, cut into batches of b (a
  batch larger than the set holds each example several times). The
  mini-batches matter: the paper's analysis credits Reptile's generalization
  to the inner product of gradients on different mini-batches, and on
  Omniglot 5-way 1-shot they learned far faster than whole-set steps
  (docs/results.md). They are drawn from `adapt`'s key.

  With `carry_inner_state=True` the inner Adam (`metajax.inner.carried_adam`)
  keeps its second-moment estimates and bias correction from task to task,
  as the paper's code does (its TensorFlow Adam's slots are never reset;
  only the weights are). Then
  meta_params is `{"params": weights, "inner_state": {"nu": ...,
  "debias": ...}}` (Adam's second moments, and 1 - b2^t after t steps); every
  task of a meta-step starts from the carried statistics (at test time too),
  and the next meta-step starts from their mean over the meta-batch's tasks
  (the paper's code runs the tasks one after another through one Adam
  instead). Those statistics are state, not meta-parameters: `outer_grad`
  gives them old - new, and the outer optimizer must set them to the new
  value whatever its step size, which `carry_outer_opt(opt)` does: the
  learner's `wrap_outer_opt`, which the trainer applies to the outer
  optimizer it is given (`metajax.step.outer_optimizer`).

  Args:
    model: a flax module.
    inner_lr: step size of the default inner Adam.
    inner_steps: inner steps, during meta-training and at test time.
    inner_opt: a fixed inner optax optimizer instead of the default (not with
      `carry_inner_state`).
    carry_inner_state: carry the inner Adam's statistics across tasks.
    b2: the inner Adam's second-moment decay.
    inner_batch_size: examples per inner step (None: the whole support set).
    task: "classification" or "regression".

  Returns:
    A `Learner` whose `outer_grad` is theta - adapted.

  References:
    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms",
    2018.
  """
  inner_lr = checks.positive("inner_lr", inner_lr)
  carry_inner_state = checks.boolean("carry_inner_state", carry_inner_state)
  if not (checks.is_number(b2) and 0 <= b2 < 1):
    raise ValueError(f"b2 must be a finite number in [0, 1), got {b2!r}.")
  inner_batch_size = checks.integer(
    "inner_batch_size", inner_batch_size, minimum=1, optional=True
  )
  if inner_opt is not None and carry_inner_state:
    raise ValueError(
      "carry_inner_state carries the default inner Adam's "
      "statistics; it does not take an inner_opt."
    )
  if carry_inner_state:
    inner_opt = carried_adam(inner_lr, b2)
  elif inner_opt is None:
    inner_opt = optax.adam(inner_lr, b1=0.0, b2=b2)
  # maml gives init, predict, loss and metric (and checks inner_steps).
  base = maml(
    model,
    inner_steps=inner_steps,
    first_order=True,
    inner_opt=inner_opt,
    task=task,
  )

  def run(weights, opt_state, support, key) -> InnerResult:
    """The inner steps from `opt_state` (None: a fresh one), each on the
    support set or on one mini-batch of it."""
    support_x = to_float(jnp.asarray(support[0]))
    support_y = jnp.asarray(support[1])
    batches = None
    if inner_batch_size is not None:
      if key is None:
        raise ValueError(
          "Reptile with inner_batch_size draws its mini-batches "
          "from adapt's key; got key=None."
        )
      batches = support_batches(
        key, support_y.shape[0], inner_steps, inner_batch_size
      )

    def loss(params, idx):
      x, y = (
        (support_x, support_y)
        if idx is None
        else (support_x[idx], support_y[idx])
      )
      return base.loss(model.apply({"params": params}, x), y)

    return optimize(
      inner_opt,
      loss,
      weights,
      steps=inner_steps,
      opt_state=opt_state,
      inputs=batches,
    )

  if carry_inner_state:
    return _carried(base, inner_opt, run)

  def adapt(meta_params, support, key):
    return run(meta_params, None, support, key).params

  def inner(meta_params, support, key):
    adapted = adapt(meta_params, support, key)
    return adapted, adapted

  return base._replace(adapt=adapt, outer_grad=_outer_grad(base, inner))


def support_batches(
  key: jax.Array, n: int, steps: int, batch_size: int
) -> jax.Array:
  """[steps, batch_size] indices into a support set of `n` examples.

  Shuffled passes over the set one after another, cut into batches of
  `batch_size` (the paper's code's mini-batches without replacement; a
  batch longer than a pass spans several passes).
  """
  passes = -(-steps * batch_size // n)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n))(
    jax.random.split(key, passes)
  )
  return perms.reshape(-1)[: steps * batch_size].reshape(steps, batch_size)


def _outer_grad(base: Learner, inner):
  """Reptile's per-task outer "gradient" meta_params - target.

  `inner(meta_params, support, key)` gives the adapted weights (scored on the
  query set) and the target the meta-parameters move toward, shaped like
  them; no gradient flows through either.
  """

  def outer_grad(meta_params, episode, key):
    adapted, target = jax.lax.stop_gradient(
      inner(meta_params, episode.support, key)
    )
    # The adapted weights are the whole predictor (base.predict ignores
    # meta_params).
    outputs = base.predict(meta_params, adapted, episode.query_x)
    grads = jax.tree.map(lambda t, a: t - a, meta_params, target)
    return grads, (
      base.loss(outputs, episode.query_y),
      base.metric(outputs, episode.query_y),
    )

  return outer_grad


def _carried(
  base: Learner, inner_opt: optax.GradientTransformation, run
) -> Learner:
  """Reptile whose inner Adam (`carried_adam`) starts from the statistics
  carried in meta_params[CARRIED] and hands back the new ones."""

  def init(key, episode):
    weights = base.init(key, episode)
    return {"params": weights, CARRIED: inner_opt.init(weights)._asdict()}

  def adapt(meta_params, support, key):
    return run(
      meta_params["params"],
      CarriedAdamState(**meta_params[CARRIED]),
      support,
      key,
    ).params

  def inner(meta_params, support, key):
    result = run(
      meta_params["params"],
      CarriedAdamState(**meta_params[CARRIED]),
      support,
      key,
    )
    return result.params, {
      "params": result.params,
      CARRIED: result.opt_state._asdict(),
    }

  return base._replace(
    init=init,
    adapt=adapt,
    outer_grad=_outer_grad(base, inner),
    wrap_outer_opt=carry_outer_opt,
  )


def carry_outer_opt(
  outer_opt: optax.GradientTransformation,
) -> optax.GradientTransformation:
  """`outer_opt` for the meta-parameters, and for meta_params["inner_state"]
  (a Reptile with `carry_inner_state`) the carried statistics' new value.

  The trainer hands the outer optimizer the meta-batch's mean outer
  "gradient"; for the carried statistics that is old - mean(new), so an
  update of minus it sets them to the mean of the tasks' new statistics,
  whatever `outer_opt`'s step size or clipping.
  """

  def labels(meta_params):
    return {
      name: jax.tree.map(
        lambda _, c=(name == CARRIED): "carried" if c else "meta", sub
      )
      for name, sub in meta_params.items()
    }

  return optax.multi_transform(
    {"meta": outer_opt, "carried": optax.scale(-1.0)}, labels
  )
