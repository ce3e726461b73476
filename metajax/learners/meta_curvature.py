"""Meta-Curvature: MAML whose inner gradient is transformed by learned
Kronecker-factored matrices (Park & Oliva 2019)."""

import functools

import flax.linen as nn

from metajax import checks
from metajax.inner.meta_curvature import VECTORS
from metajax.inner.meta_curvature import init_meta_curvature
from metajax.inner.meta_curvature import meta_curvature as mc_transform
from metajax.learners.maml import maml
from metajax.types import Learner


def meta_curvature(
  model: nn.Module,
  *,
  inner_lr: float = 0.4,
  inner_steps: int = 1,
  first_order: bool = False,
  vectors: str = "diagonal",
  task: str = "classification",
  remat: bool = False,
  **kwargs,
) -> Learner:
  """Meta-Curvature: MAML with a meta-learned transform of the inner gradient.

  meta_params = {"params": initial weights, "inner": factors}; each inner
  step is weights - inner_lr * MC(grad) (`metajax.inner.meta_curvature`):
  a conv kernel's gradient [kh, kw, C_in, C_out], read as [kh * kw, C_in,
  C_out], is multiplied on each axis by its own square matrix (M_f, M_i,
  M_o), i.e. by the Kronecker product M_f kron M_i kron M_o; a dense
  kernel's by M_i and M_o; a vector's (biases, batch-norm scales) by a
  diagonal, or a full matrix with `vectors="full"`. The same factors serve
  every inner step. They start at the identity, so the untrained learner is
  MAML, and are learned with the initialization through MAML's second-order
  meta-gradient (`first_order=True` drops its second-order terms, as
  FOMAML).

  As in the paper's tensor form, every factor multiplies its axis from the
  left (a mode product); the authors' TensorFlow code multiplies the output
  axis from the right, i.e. learns the transpose of M_o, which trains
  identically under an elementwise outer optimizer such as Adam.

  Args:
    model: a flax module mapping float inputs [B, ...] to outputs [B, ...].
    inner_lr: the inner step size alpha (fixed; the factors set the scale
      they learn).
    inner_steps: number of inner updates (>= 0).
    first_order: drop second-order terms of the meta-gradient.
    vectors: the factor of 1-D parameters: "diagonal" (the authors' code
      and learn2learn) or "full" (a matrix).
    task: "classification" (cross-entropy, accuracy) or "regression" (MSE).
    remat: rematerialize each inner step in the backward pass.
    **kwargs: `maml`'s other options (`trainable`, `multi_step_loss`,
      `first_order_steps`); not its inner optimizer's.

  Returns:
    A `Learner` whose task state is the adapted weights.

  Example:
    Adapting to one task::

      learner = meta_curvature(Conv4(5), inner_lr=0.4)
      meta_params = learner.init(key, episode)  # {"params", "inner"}
      adapted = learner.adapt(meta_params, episode.support, key)

  References:
    Park & Oliva, "Meta-Curvature", NeurIPS 2019.
  """
  inner_lr = checks.positive("inner_lr", inner_lr)
  vectors = checks.one_of("vectors", vectors, VECTORS)
  for name in ("inner_opt", "inner_opt_fn", "inner_hparams", "lslr"):
    if kwargs.get(name):
      raise ValueError(
        f"meta_curvature's inner optimizer is its own (SGD on the "
        f"transformed gradient); it takes no {name}."
      )
  return maml(
    model,
    inner_lr=inner_lr,
    inner_steps=inner_steps,
    first_order=first_order,
    inner_opt_fn=functools.partial(mc_transform, learning_rate=inner_lr),
    inner_hparams=functools.partial(init_meta_curvature, vectors=vectors),
    task=task,
    remat=remat,
    **kwargs,
  )
