"""Reptile (Nichol, Achiam & Schulman 2018)."""

from typing import Optional

import flax.linen as nn
import jax
import optax

from metajax.learners.maml import maml
from metajax.types import Learner


def reptile(model: nn.Module, *, inner_lr: float = 1e-3, inner_steps: int = 5,
            inner_opt: Optional[optax.GradientTransformation] = None,
            task: str = "classification") -> Learner:
  """Reptile as a `Learner` with an `outer_grad`.

  `adapt` is `inner_steps` plain steps of `inner_opt` (default: Adam with
  beta1 = 0 and step `inner_lr`, as in the paper) on the support set, with no
  differentiation through them. For meta-training, each task contributes the
  outer "gradient" theta - adapted; the trainer averages it over the
  meta-batch and hands it to the outer optimizer, so `optax.sgd(epsilon)`
  gives the paper's theta <- theta + epsilon * mean(adapted - theta).

  Args:
    model: a flax module.
    inner_lr: step size of the default inner Adam.
    inner_steps: inner steps, during meta-training and at test time.
    inner_opt: a fixed inner optax optimizer instead of the default.
    task: "classification" or "regression".

  Returns:
    A `Learner` whose `outer_grad` is theta - adapted.

  References:
    Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms",
    2018.
  """
  if inner_opt is None:
    if not inner_lr > 0:
      raise ValueError(f"inner_lr must be > 0, got {inner_lr!r}.")
    inner_opt = optax.adam(inner_lr, b1=0.0)
  base = maml(model, inner_steps=inner_steps, first_order=True,
              inner_opt=inner_opt, task=task)

  def outer_grad(meta_params, episode, key):
    adapted = jax.lax.stop_gradient(
        base.adapt(meta_params, episode.support, key))
    outputs = base.predict(meta_params, adapted, episode.query_x)
    grads = jax.tree.map(lambda t, a: t - a, meta_params, adapted)
    return grads, (base.loss(outputs, episode.query_y),
                   base.metric(outputs, episode.query_y))

  return base._replace(outer_grad=outer_grad)
