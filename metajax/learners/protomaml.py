"""ProtoMAML (Triantafillou et al. 2020) on MAML's inner loop.

MAML over a headless embedding and a linear head that is not meta-learned:
for each task, before the inner loop, the head is set from the support set's
prototypes c_k (the class means of the embedding, as in Prototypical
Networks) to weights `2 c_k` and bias `-||c_k||^2`, so that its initial
logits are `-||z - c_k||^2` up to `||z||^2`, a term the same for every class. MAML's inner loop
(`metajax.learners.maml`) then adapts the embedding and the head together.
"""

from typing import Any, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metajax import checks
from metajax.learners.maml import TrainableFn, _maml, _step_weights
from metajax.learners.protonet import class_means
from metajax.types import Learner

__all__ = ("protomaml", "prototype_head")


def prototype_head(embeddings: Any, labels: Any, ways: int) -> dict:
  """The linear head of ProtoMAML's start from a support set's embeddings.

  Args:
    embeddings: [n, D] support embeddings.
    labels: [n] their labels in 0..ways-1.
    ways: classes of the task.

  Returns:
    {"kernel": [D, ways] with column k = 2 c_k, "bias": [ways] with entry k
    = `-||c_k||^2`}, c_k the mean embedding of class k
    (`protonet.class_means`): `z @ kernel + bias = -||z - c_k||^2 + ||z||^2`.
  """
  prototypes = class_means(embeddings, labels, ways)  # [ways, D]
  return {
    "kernel": 2.0 * prototypes.T,
    "bias": -jnp.sum(prototypes * prototypes, axis=-1),
  }


def protomaml(
  embedding: nn.Module,
  *,
  ways: int,
  inner_lr: float = 0.01,
  inner_steps: int = 5,
  first_order: bool = True,
  inner_opt: Optional[optax.GradientTransformation] = None,
  trainable: Optional[TrainableFn] = None,
  multi_step_loss: Union[bool, Sequence[float], None] = None,
  prototype_gradient: bool = True,
  remat: bool = False,
) -> Learner:
  """ProtoMAML: MAML whose output layer starts at the support's prototypes.

  meta_params = {"embed": the embedding's params}; the head has no
  meta-parameters. `adapt` embeds the support set, sets the head to
  `prototype_head` (weights `2 c_k`, bias `-||c_k||^2`), then takes `inner_steps`
  steps of MAML's inner loop on the support cross-entropy over the embedding
  and the head together; the task state is the adapted
  {"embed", "head": {"kernel", "bias"}}, and `predict` is the adapted
  embedding followed by the adapted head. With zero inner steps the logits
  are ProtoNets' squared Euclidean ones up to a per-query constant.

  The outer gradient flows through the inner loop and through the head's
  start: the prototypes are a function of the embedding's parameters, as in
  the paper's released code. The defaults are the paper's (its released
  Meta-Dataset configuration, and its tables' fo-Proto-MAML): first order
  (`first_order=True`, which drops the second-order terms of the inner
  steps but keeps the prototype path), 5 inner steps of SGD 0.01. Since the
  head is built from the support set, training and test episodes may have
  different numbers of ways (a learner per way count, the same
  meta_params).

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D], e.g.
      `Conv4(None)`.
    ways: classes per episode (support labels lie in 0..ways-1).
    inner_lr: step size of the default inner SGD.
    inner_steps: number of inner updates (>= 0).
    first_order: drop the second-order terms of the inner steps (the
      paper's fo-Proto-MAML); False differentiates through them (MAML's
      second order).
    inner_opt: a fixed inner optimizer instead of SGD (`maml`'s).
    trainable: params -> pytree of bools over {"embed", "head"}; only True
      leaves adapt (`maml`'s; `head_only()` adapts only the head).
    multi_step_loss: MAML++'s multi-step loss weights (`maml`'s).
    prototype_gradient: whether the outer gradient flows through the
      head's start; False stops it at the prototypes (an ablation: then
      the embedding learns only through the inner loop and the queries).
    remat: rematerialize each inner step in the backward pass.

  Returns:
    A `Learner` whose task state is the adapted {"embed", "head"}.

  Example:
    One task, 5-way, on a Conv4 embedding::

      learner = protomaml(Conv4(None), ways=5, inner_lr=0.4, inner_steps=1)
      params = learner.init(key, episode)
      adapted = learner.adapt(params, episode.support, key)
      logits = learner.predict(params, adapted, episode.query_x)

  References:
    Triantafillou, Zhu, Dumoulin, Lamblin, Evci, Xu, Goroshin, Gelada,
    Swersky, Manzagol & Larochelle, "Meta-Dataset: A Dataset of Datasets for
    Learning to Learn from Few Examples", ICLR 2020 (Section 3, Proto-MAML).
  """
  ways = checks.integer("ways", ways, minimum=2)
  inner_steps = checks.integer("inner_steps", inner_steps, minimum=0)
  prototype_gradient = checks.boolean("prototype_gradient", prototype_gradient)

  def embed(embed_params, x):
    return embedding.apply({"params": embed_params}, x)

  def init(key, x):
    return {"embed": embedding.init(key, x).get("params", {})}

  def apply(params, x):
    z = embed(params["embed"], x)
    return z @ params["head"]["kernel"] + params["head"]["bias"]

  def start(weights, support_x, support_y):
    head = prototype_head(embed(weights["embed"], support_x), support_y, ways)
    if not prototype_gradient:
      head = jax.lax.stop_gradient(head)
    return {"embed": weights["embed"], "head": head}

  return _maml(
    init,
    apply,
    inner_lr=checks.positive("inner_lr", inner_lr),
    inner_steps=inner_steps,
    first_order=checks.boolean("first_order", first_order),
    inner_opt=inner_opt,
    inner_opt_fn=None,
    inner_hparams=None,
    trainable=trainable,
    multi_step_loss=_step_weights(multi_step_loss, inner_steps),
    task="classification",
    remat=checks.boolean("remat", remat),
    start=start,
  )
