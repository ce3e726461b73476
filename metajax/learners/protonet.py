"""Prototypical Networks (Snell et al. 2017) as a `Learner`.

The task state is one prototype per class, the mean embedding of its support
examples; a query's logits are its negative squared Euclidean distances to
the prototypes (or scaled cosine similarities).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import checks
from metajax import losses
from metajax.learners.embedding import l2_normalize, to_float
from metajax.types import Episode, Learner

__all__ = ("class_means", "protonet", "squared_distances")

DISTANCES = ("euclidean", "cosine")
QUERY_NORMS = ("batch", "support")


def class_means(embeddings: Any, labels: Any, ways: int) -> jax.Array:
  """[ways, D] mean of the rows of `embeddings` [n, D] with each label.

  A class without examples gets a zero row (never the case in an episode).
  """
  onehot = jax.nn.one_hot(labels, ways, dtype=embeddings.dtype)  # [n, ways]
  counts = jnp.maximum(onehot.sum(axis=0), 1.0)
  return (onehot.T @ embeddings) / counts[:, None]


def squared_distances(x: Any, y: Any) -> jax.Array:
  """[n, m] squared Euclidean distances between rows of x [n, D] and y [m, D].

  Written as `|x|^2 - 2 x.y + |y|^2` (one matmul), clipped at 0.
  """
  d = (
    jnp.sum(x * x, axis=-1)[:, None]
    - 2.0 * x @ y.T
    + jnp.sum(y * y, axis=-1)[None, :]
  )
  return jnp.maximum(d, 0.0)


def protonet(
  embedding: nn.Module,
  *,
  ways: int,
  distance: str = "euclidean",
  scale: float = 10.0,
  query_norm: str = "batch",
) -> Learner:
  """Prototypical Networks.

  meta_params = {"embed": the embedding's params}. `adapt` embeds the support
  set and averages each class (`class_means`); `predict` embeds the queries
  and returns logits `-|f(x) - c_k|^2` ("euclidean") or scale * cos(f(x), c_k)
  ("cosine"). Training is the query cross-entropy of these logits; training
  with more ways than testing (the paper's 60-way Omniglot episodes) only
  needs a learner built with the training `ways` and one with the test ways
  over the same meta_params.

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D], e.g.
      `Conv4(None)`.
    ways: classes per episode (support labels lie in 0..ways-1).
    distance: "euclidean" (the paper's) or "cosine".
    scale: multiplies the cosine similarities (unused for "euclidean").
    query_norm: how the embedding's batch norm treats the queries. "batch":
      the query set is one batch, so a query's features depend on the other
      queries (transductive). "support": the queries are normalized with the
      support set's statistics (`Conv4(...)(x, stats_rows=n)`), so each
      query is classified on its own, as in Lake's one-shot protocol.

  Returns:
    A `Learner` whose task state is the prototypes [ways, D] ("batch"), or
    the support set {"support_x", "support_y"} ("support": embedded with
    each query set, in one pass).

  References:
    Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning",
    NeurIPS 2017.
  """
  ways = checks.integer("ways", ways, minimum=2)
  distance = checks.one_of("distance", distance, DISTANCES)
  scale = checks.positive("scale", scale)
  query_norm = checks.one_of("query_norm", query_norm, QUERY_NORMS)
  loss_fn, metric_fn, metric_name = losses.for_task("classification")

  def embed(meta_params, x, **kwargs):
    return embedding.apply(
      {"params": meta_params["embed"]}, to_float(x), **kwargs
    )

  def init(key, episode: Episode):
    return {
      "embed": embedding.init(key, to_float(episode.support_x)).get(
        "params", {}
      )
    }

  def adapt(meta_params, support, key):
    del key  # deterministic.
    support_x, support_y = support
    if query_norm == "batch":
      return class_means(embed(meta_params, support_x), support_y, ways)
    # The support set is embedded with its queries, in one pass (its rows
    # give the statistics, so its features are those it has alone).
    return {"support_x": support_x, "support_y": support_y}

  def predict(meta_params, state, query_x):
    if query_norm == "batch":
      prototypes, q = state, embed(meta_params, query_x)
    else:
      n = len(state["support_x"])
      both = jnp.concatenate([state["support_x"], query_x])
      z = embed(meta_params, both, stats_rows=n)
      prototypes, q = class_means(z[:n], state["support_y"], ways), z[n:]
    if distance == "euclidean":
      return -squared_distances(q, prototypes)
    return scale * l2_normalize(q) @ l2_normalize(prototypes).T

  return Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
  )
