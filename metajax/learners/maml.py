"""MAML and first-order MAML (Finn et al. 2017) with any optax inner optimizer."""

from typing import Optional

import flax.linen as nn
import jax
import optax

from metajax import losses
from metajax.data.preprocess import to_float
from metajax.types import Episode, Learner


def maml(model: nn.Module, *, inner_lr: float = 0.4, inner_steps: int = 1,
         first_order: bool = False,
         inner_opt: Optional[optax.GradientTransformation] = None,
         task: str = "classification", remat: bool = False) -> Learner:
  """Model-Agnostic Meta-Learning as a `Learner`.

  `adapt` runs `inner_steps` updates of `inner_opt` (default: SGD with step
  `inner_lr`) on the support loss under `jax.lax.scan`; the meta-gradient flows
  through every step (second order) unless `first_order=True`, which stops the
  gradient through the inner gradients (FOMAML).

  Args:
    model: a flax module mapping float inputs [B, ...] to outputs [B, ...]; its
      parameters (the 'params' collection) are the meta-parameters.
    inner_lr: step size of the default inner SGD (ignored if `inner_opt`).
    inner_steps: number of inner updates (>= 0).
    first_order: drop second-order terms (FOMAML).
    inner_opt: any optax transformation to use as the inner optimizer; if it
      accepts extra args, it receives the support loss as `value=`.
    task: "classification" (cross-entropy, accuracy) or "regression" (MSE).
    remat: rematerialize each inner step in the backward pass
      (`jax.checkpoint`), trading compute for memory with many inner steps.

  Returns:
    A `Learner` whose task state is the adapted parameters.

  Example:
    learner = maml(Conv4(5), inner_lr=0.4, inner_steps=1)
    params = learner.init(key, episode)
    adapted = learner.adapt(params, episode.support, key)
    logits = learner.predict(params, adapted, episode.query_x)

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks", ICML 2017.
  """
  if not isinstance(inner_steps, int) or inner_steps < 0:
    raise ValueError(f"inner_steps must be an integer >= 0, got {inner_steps!r}.")
  if inner_opt is None:
    if not inner_lr > 0:
      raise ValueError(f"inner_lr must be > 0, got {inner_lr!r}.")
    inner_opt = optax.sgd(inner_lr)
  inner_opt = optax.with_extra_args_support(inner_opt)
  loss_fn, metric_fn, metric_name = losses.for_task(task)

  def apply(params, x):
    return model.apply({"params": params}, to_float(x))

  def init(key, episode: Episode):
    return model.init(key, to_float(episode.support_x))["params"]

  def adapt(meta_params, support, key):
    del key  # MAML's inner loop is deterministic.
    support_x, support_y = support
    support_x = to_float(support_x)

    def support_loss(params):
      return loss_fn(model.apply({"params": params}, support_x), support_y)

    def step(carry, _):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(support_loss)(params)
      if first_order:
        grads = jax.lax.stop_gradient(grads)
      updates, opt_state = inner_opt.update(grads, opt_state, params,
                                            value=loss)
      return (optax.apply_updates(params, updates), opt_state), loss

    if remat:
      step = jax.checkpoint(step)
    carry = (meta_params, inner_opt.init(meta_params))
    (params, _), _ = jax.lax.scan(step, carry, None, length=inner_steps)
    return params

  def predict(meta_params, task_state, query_x):
    del meta_params  # the adapted parameters are the whole predictor.
    return apply(task_state, query_x)

  return Learner(init=init, adapt=adapt, predict=predict, loss=loss_fn,
                 metric=metric_fn, metric_name=metric_name)
