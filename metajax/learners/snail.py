"""SNAIL, the Simple Neural AttentIve meta-Learner (Mishra et al. 2018).

A black-box learner: the episode is a sequence of T = N*K + 1 steps, the
support examples (in an order drawn from adapt's key) each paired with its
own one-hot label, then one query with a zero label vector. A stack of
causal temporal-convolution (TC) and causal soft-attention blocks reads the
sequence, and the output at the last step is the query's logits. The paper's
few-shot architecture:

    Attention(64, 32), TC(T, 128), Attention(256, 128), TC(T, 128),
    Attention(512, 256), then a 1x1 convolution (a dense layer) to N classes,

where TC(T, D) is ceil(log2 T) dense blocks with dilations 1, 2, 4, ...,
each concatenating tanh(f) * sigmoid(g) of a causal dilated convolution of
kernel 2 and D filters to its input, and Attention(K, V) concatenates to its
input a causal single-head soft attention (keys and queries of size K,
values of size V, logits scaled by 1/sqrt(K)).

Each query is its own sequence (support + that query): the support steps
are computed once (causal: they do not depend on the query), and each query
step from them and itself only, so a query's prediction never depends on
another's.
"""

import math
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import losses
from metajax import checks
from metajax.learners.embedding import embed_each, to_float
from metajax.learners.sequence import causal_mask, support_sequence
from metajax.types import Episode, Learner

__all__ = (
  "AttentionBlock",
  "SNAIL",
  "TCBlock",
  "attention_fn",
  "snail",
  "tc_depth",
)

Array = Any

# Logit of a masked (future) attention position: large, negative, finite.
_MASKED = -1e9

PAPER_ATTENTION = ((64, 32), (256, 128), (512, 256))


def tc_depth(sequence_length: int) -> int:
  """ceil(log2 T): the dense blocks of a TC block covering T steps (>= 1)."""
  return max(1, math.ceil(math.log2(sequence_length)))


class DenseBlock(nn.Module):
  """[T, C] -> [T, C + filters]: a gated causal dilated convolution, concatenated.

  Kernel 2: out_t = W_0 x_{t - dilation} + W_1 x_t + b (zeros before step 0).
  Called with `queries`, each query row is a further step n after the n
  steps of `x`, computed on its own (see `SNAIL`).

  Attributes:
    dilation: the step between the two taps.
    filters: D.
  """

  dilation: int
  filters: int

  @nn.compact
  def __call__(self, x: Array, queries: Array):
    conv = nn.Dense(2 * self.filters, name="conv")

    def gated(past, now):
      f, g = jnp.split(conv(jnp.concatenate([past, now], axis=-1)), 2, axis=-1)
      return jnp.concatenate([now, jnp.tanh(f) * jax.nn.sigmoid(g)], axis=-1)

    n = x.shape[0]
    past = jnp.pad(x, ((self.dilation, 0), (0, 0)))[:n]
    # A query at step n reads step n - dilation of the prefix (or zeros).
    query_past = (
      x[n - self.dilation]
      if n >= self.dilation
      else jnp.zeros(x.shape[1:], x.dtype)
    )
    query_past = jnp.broadcast_to(query_past, queries.shape)
    return gated(past, x), gated(query_past, queries)


class TCBlock(nn.Module):
  """[T, C] -> [T, C + depth * filters]: dense blocks of dilation 1, 2, 4, ...

  Attributes:
    depth: the number of dense blocks, `tc_depth(T)`.
    filters: D of each dense block.
  """

  depth: int
  filters: int

  @nn.compact
  def __call__(self, x: Array, queries: Array):
    for i in range(self.depth):
      x, queries = DenseBlock(2**i, self.filters, name=f"dense{i}")(x, queries)
    return x, queries


class AttentionBlock(nn.Module):
  """[T, C] -> [T, C + value_size]: causal soft attention, concatenated.

  read_t = sum_{s <= t} softmax_s(q_t . k_s / sqrt(key_size)) v_s, with
  q, k, v affine maps of the input. A query row (a step n after the n steps
  of `x`) attends to the n steps and to itself only.

  Attributes:
    key_size: K.
    value_size: V.
  """

  key_size: int
  value_size: int

  @nn.compact
  def __call__(self, x: Array, queries: Optional[Array] = None):
    query_map = nn.Dense(self.key_size, name="query")
    key_map = nn.Dense(self.key_size, name="key")
    value_map = nn.Dense(self.value_size, name="value")
    scale = 1.0 / math.sqrt(self.key_size)
    keys, values = key_map(x), value_map(x)
    logits = query_map(x) @ keys.T * scale
    logits = jnp.where(causal_mask(x.shape[0]), logits, _MASKED)
    out = jnp.concatenate(
      [x, jax.nn.softmax(logits, axis=-1) @ values], axis=-1
    )
    if queries is None:
      return out
    q, own_key, own_value = (
      query_map(queries),
      key_map(queries),
      value_map(queries),
    )
    logits = jnp.concatenate(
      [q @ keys.T, jnp.sum(q * own_key, axis=-1, keepdims=True)], axis=-1
    )
    weights = jax.nn.softmax(logits * scale, axis=-1)  # [m, n + 1]
    self.sow("intermediates", "query_weights", weights)  # for attention_fn
    read = weights[:, :-1] @ values + weights[:, -1:] * own_value
    return out, jnp.concatenate([queries, read], axis=-1)


class SNAIL(nn.Module):
  """The few-shot SNAIL over a sequence [T, C] -> logits [T, ways].

  Attention, TC, Attention, TC, Attention (one more attention block than TC
  blocks), then a dense output layer. With `queries` [m, C], also returns
  [m, ways]: row i is the output at step T of the sequence x + queries[i],
  computed without recomputing x for each query (x's outputs do not depend
  on later steps).

  Attributes:
    ways: the output classes.
    depth: dense blocks per TC block (`tc_depth(T)`).
    attention: (key_size, value_size) of each attention block.
    tc_filters: D of the TC blocks.
  """

  ways: int
  depth: int
  attention: Tuple[Tuple[int, int], ...] = PAPER_ATTENTION
  tc_filters: int = 128

  @nn.compact
  def __call__(self, x: Array, queries: Optional[Array] = None):
    alone = queries is None
    if alone:
      queries = jnp.zeros((0,) + x.shape[1:], x.dtype)
    for i, (key_size, value_size) in enumerate(self.attention):
      if i:
        x, queries = TCBlock(self.depth, self.tc_filters, name=f"tc{i - 1}")(
          x, queries
        )
      x, queries = AttentionBlock(key_size, value_size, name=f"attention{i}")(
        x, queries
      )
    output = nn.Dense(self.ways, name="output")
    return output(x) if alone else (output(x), output(queries))


def snail(
  embedding: nn.Module,
  *,
  ways: int,
  shots: int,
  attention: Sequence[Sequence[int]] = PAPER_ATTENTION,
  tc_filters: int = 128,
) -> Learner:
  """SNAIL: causal temporal convolutions and attention over the episode.

  meta_params = {"embed": the embedding's params, "snail": the blocks'}.
  The task state is the support sequence: {"features": [n, D] embeddings in
  sequence order, "labels": [n, ways] their one-hot labels}, the order drawn
  from adapt's key. `predict` appends each query (zero label vector) to it
  as step n + 1 and returns that step's [ways] logits, for every query
  independently ([m, ways]). Each example is embedded alone (`embed_each`).

  The TC blocks' depth is fixed by T = ways * shots + 1 (the paper's), so a
  run trains and tests with the same ways and shots; a support set of
  another size still works (its steps beyond the receptive field of the
  convolutions are reached by the attention blocks).

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D], e.g.
      `Conv4(None)`.
    ways: classes per episode (>= 2).
    shots: examples per class in the support set (>= 1).
    attention: (key_size, value_size) per attention block; a TC block sits
      between each two (the paper's Omniglot sizes by default).
    tc_filters: D of the TC blocks' dense blocks (the paper's 128).

  Returns:
    A classification `Learner`.

  References:
    Mishra, Rohaninejad, Chen & Abbeel, "A Simple Neural Attentive
    Meta-Learner", ICLR 2018.
  """
  return _snail(
    embedding,
    ways=ways,
    shots=shots,
    attention=attention,
    tc_filters=tc_filters,
  )[0]


def _attention_sizes(attention: Sequence[Sequence[int]]):
  """`snail`'s `attention` checked: a tuple of (key_size, value_size) pairs."""
  attention = tuple(tuple(a) for a in attention)
  if not attention or any(
    len(a) != 2 or not all(checks.is_int(v) and v >= 1 for v in a)
    for a in attention
  ):
    raise ValueError(
      "attention must be a non-empty sequence of (key_size, "
      f"value_size) pairs of integers >= 1, got {attention!r}."
    )
  return attention


def _snail(
  embedding: nn.Module,
  *,
  ways: int,
  shots: int,
  attention: Sequence[Sequence[int]] = PAPER_ATTENTION,
  tc_filters: int = 128,
):
  """(`snail` learner, its `attention_fn`); see `snail`."""
  ways = checks.integer("ways", ways, minimum=2)
  shots = checks.integer("shots", shots, minimum=1)
  attention = _attention_sizes(attention)
  tc_filters = checks.integer("tc_filters", tc_filters, minimum=1)
  loss_fn, metric_fn, metric_name = losses.for_task("classification")
  model = SNAIL(
    ways=int(ways),
    depth=tc_depth(ways * shots + 1),
    attention=tuple((int(k), int(v)) for k, v in attention),
    tc_filters=int(tc_filters),
  )

  def init(key, episode: Episode):
    embed_key, snail_key = jax.random.split(key)
    x = to_float(episode.support_x[:1])
    params = {"embed": embedding.init(embed_key, x).get("params", {})}
    features = embed_each(embedding, params["embed"], x)
    sequence = jnp.concatenate(
      [features, jnp.zeros((1, ways), features.dtype)], axis=-1
    )
    params["snail"] = model.init(snail_key, sequence)["params"]
    return params

  def adapt(meta_params, support, key):
    x, labels, _ = support_sequence(support, key, ways, label_shift=0)
    return {
      "features": embed_each(embedding, meta_params["embed"], x),
      "labels": labels,
    }

  def sequence(meta_params, task_state, query_x):
    """(support steps [n, D + ways], query steps [m, D + ways], no label)."""
    prefix = jnp.concatenate(
      [task_state["features"], task_state["labels"]], axis=-1
    )
    queries = embed_each(embedding, meta_params["embed"], query_x)
    queries = jnp.concatenate(
      [queries, jnp.zeros((queries.shape[0], ways), queries.dtype)], axis=-1
    )
    return prefix, queries

  def predict(meta_params, task_state, query_x):
    return model.apply(
      {"params": meta_params["snail"]},
      *sequence(meta_params, task_state, query_x),
    )[1]

  def query_attention(meta_params, task_state, query_x):
    _, found = model.apply(
      {"params": meta_params["snail"]},
      *sequence(meta_params, task_state, query_x),
      mutable=["intermediates"],
    )
    blocks = found["intermediates"]
    return [
      blocks[f"attention{i}"]["query_weights"][0] for i in range(len(attention))
    ]

  learner = Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
  )
  return learner, query_attention


def attention_fn(embedding: nn.Module, *, ways: int, shots: int, **kwargs):
  """The query attention of `snail(embedding, ways=..., shots=..., ...)`.

  Returns (meta_params, task_state, query_x [m, ...]) -> a list with one
  [m, n + 1] array per attention block (first block first): row i is query
  i's softmax weights over the n support steps, in the task state's
  sequence order (`task_state["labels"]` gives their classes), and, last,
  over itself. Each row sums to 1. The same arguments as `snail`.
  """
  return _snail(embedding, ways=ways, shots=shots, **kwargs)[1]
