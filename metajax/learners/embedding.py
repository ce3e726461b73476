"""Helpers of the learners that embed their inputs: scaling the host's images,
normalizing features, embedding examples one at a time, freezing an embedding,
and the learner around a linear head solved on each support set (R2-D2,
LR-D2, MetaOptNet).

Every learner with an embedding keeps its parameters in `meta_params["embed"]`
(ProtoNets, Matching Nets, R2-D2, LR-D2, the Baselines, MANN, SNAIL), which
is what `freeze_embedding` and a run's `embedding_init` rely on.
"""

from typing import Any, Callable, Dict

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import losses
from metajax.types import Episode, Learner

__all__ = (
  "embed_each",
  "freeze_embedding",
  "l2_normalize",
  "solved_head_learner",
  "to_float",
)

Array = Any


def to_float(x):
  """uint8 (or any integer) images -> float32 / 255; floats pass unchanged.

  Runs inside the jitted step, so images cross to the device as uint8.
  """
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(jnp.float32) / 255.0
  return x.astype(jnp.float32)


def l2_normalize(x: Any, axis: int = -1, eps: float = 1e-8) -> jax.Array:
  """`x` scaled to unit L2 norm along `axis` (eps keeps zero vectors finite).

  The cosine of ProtoNets, Matching Nets and Baseline++ is a product of these.
  """
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=axis, keepdims=True) + eps)


def embed_each(
  embedding: nn.Module, params, x: Array, eps: float = 1e-5
) -> jax.Array:
  """[n, D] embeddings of the n examples of `x`, each embedded ALONE.

  A batch of one per example: a model with batch-statistics normalization
  (`Conv4(norm=True)`) then normalizes each example by its own statistics,
  so no example's features depend on another's (causality, and queries
  independent of each other). Each feature vector is then standardized
  (zero mean and unit variance over its D features: a layer norm without
  parameters), which puts the features of an un-normalized net, of about
  1e-2 at initialization for Conv4(norm=False) on Omniglot, on the scale of
  the one-hot labels beside them in the sequence.
  """
  x = to_float(x)
  z = jax.vmap(lambda one: embedding.apply({"params": params}, one[None])[0])(x)
  if z.ndim != 2:
    raise ValueError(
      f"The embedding must map [B, ...] to [B, D]; it returned "
      f"rows of shape {z.shape[1:]}."
    )
  z = z - z.mean(axis=-1, keepdims=True)
  return z * jax.lax.rsqrt(jnp.mean(z * z, axis=-1, keepdims=True) + eps)


def freeze_embedding(learner: Learner) -> Learner:
  """`learner` with no gradient through its `meta_params["embed"]`.

  Its functions see the embedding's parameters under `jax.lax.stop_gradient`,
  so the meta-gradient of "embed" is exactly zero and its backward pass is
  never computed (nor counted in the logged gradient norm). Adam and SGD
  outer steps then leave those parameters exactly as they are (a zero
  gradient gives a zero update); `config.freeze_embedding` applies it.
  """
  if learner.outer_grad is not None:
    raise ValueError(
      "freeze_embedding: a learner with its own outer_grad is not supported."
    )

  def frozen(meta_params):
    return dict(meta_params, embed=jax.lax.stop_gradient(meta_params["embed"]))

  task_loss = None
  if learner.task_loss is not None:
    task_loss = lambda p, ep, k: learner.task_loss(frozen(p), ep, k)
  return learner._replace(
    adapt=lambda p, support, k: learner.adapt(frozen(p), support, k),
    predict=lambda p, state, q: learner.predict(frozen(p), state, q),
    task_loss=task_loss,
  )


def solved_head_learner(
  embedding: nn.Module,
  ways: int,
  head_init: Dict[str, float],
  solve: Callable[[Any, Any, Any], Any],
  logits: Callable[[Any, Any, Any], Any],
  fit_bias: bool = False,
) -> Learner:
  """The classification `Learner` of a linear head fit on each support set.

  meta_params = {"embed": the embedding's params, "head": head_init's
  entries as float32 scalars}. `adapt` embeds the support set (a constant 1
  appended to each row if `fit_bias`) and returns `solve(head, x, onehot)`,
  the weights W [D (+1), ways]; `predict` returns `logits(head, z, W)` for
  the query embeddings z. Gradients flow through `solve` into the
  embedding and the head's parameters.
  """
  loss_fn, metric_fn, metric_name = losses.for_task("classification")

  def features(meta_params, x):
    z = jnp.asarray(
      embedding.apply({"params": meta_params["embed"]}, to_float(x))
    )
    if fit_bias:
      z = jnp.concatenate([z, jnp.ones((z.shape[0], 1), z.dtype)], axis=1)
    return z

  def init(key, episode: Episode):
    embed = embedding.init(key, to_float(episode.support_x)).get("params", {})
    head = {k: jnp.asarray(v, jnp.float32) for k, v in head_init.items()}
    return {"embed": embed, "head": head}

  def adapt(meta_params, support, key):
    del key  # deterministic.
    support_x, support_y = support
    x = features(meta_params, support_x)
    onehot = jax.nn.one_hot(support_y, ways, dtype=x.dtype)
    return solve(meta_params["head"], x, onehot)

  def predict(meta_params, state, query_x):
    return logits(meta_params["head"], features(meta_params, query_x), state)

  return Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
  )
