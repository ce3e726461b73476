"""Matching Networks (Vinyals et al. 2016).

A query is classified by attention over the labelled support set:

    P(y = c | x̂, S) = sum_i a(x̂, x_i) [y_i = c],
    a(x̂, x_i) = softmax_i(scale * cosine(f(x̂, S), g(x_i, S))).

Without full context embeddings (FCE) f and g are the same embedding network;
with FCE, g reads the whole support set with a bidirectional LSTM and f
attends to it with an LSTM for `read_steps` steps (the paper's appendix).
There is no inner loop: `adapt` only encodes the support set.
"""

from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import losses
from metajax import checks
from metajax.learners.embedding import l2_normalize, to_float
from metajax.types import Episode, Learner

__all__ = ("matching_net",)

Array = Any

# Attention logit of support items of other classes: large, negative and
# FINITE, so that a class with no support item gets a finite log-probability
# and the gradients of the logsumexp stay finite.
_MASKED = -1e9


class SupportEncoder(nn.Module):
  """FCE support encoder: g(x_i, S) = g'(x_i) + h_fwd_i + h_bwd_i.

  A bidirectional LSTM of hidden size `features` runs over the support
  embeddings g'(x_i) in support order; its forward and backward outputs are
  added to the embedding (a skip connection), as in the paper's appendix.

  Attributes:
    features: D, the embedding size (the LSTMs' hidden size).
  """

  features: int

  @nn.compact
  def __call__(self, g_prime: Array) -> Array:
    """Encodes the support set in context.

    Args:
      g_prime: [N, D] support embeddings, in support order.

    Returns:
      [N, D] fully contextual support encodings.
    """
    seq = g_prime[None]  # [1, N, D]: one sequence of N steps.
    # The cells are children of this module: params {"forward", "backward"}.
    fwd = nn.RNN(nn.LSTMCell(self.features, name="forward"))(seq)
    bwd = nn.RNN(
      nn.LSTMCell(self.features, name="backward"), reverse=True, keep_order=True
    )(seq)
    return g_prime + fwd[0] + bwd[0]


class AttentionReader(nn.Module):
  """FCE query encoder: f(x̂, S) = attLSTM(f'(x̂), g(S), K).

  h_0 = c_0 = r_0 = 0; for k = 1..K:

      ĥ_k, c_k = LSTM(f'(x̂), [h_{k-1}, r_{k-1}], c_{k-1})
      h_k = ĥ_k + f'(x̂)
      r_k = sum_i softmax_i(h_k . g(x_i, S)) g(x_i, S)

  and f = h_K. The paper concatenates h_{k-1} and r_{k-1} into the LSTM's
  hidden state; like the common re-implementations, this one feeds their SUM
  h_{k-1} + r_{k-1} as the hidden carry, which keeps the cell at size D.
  Each query is read independently of the others.

  Attributes:
    features: D, the embedding size (the LSTM's hidden size).
    read_steps: K >= 1, the number of attention reads.
  """

  features: int
  read_steps: int

  @nn.compact
  def __call__(self, f_prime: Array, g: Array) -> Array:
    """Encodes queries by attending to the support encodings.

    Args:
      f_prime: [M, D] query embeddings.
      g: [N, D] support encodings g(x_i, S).

    Returns:
      [M, D] query encodings f(x̂, S).
    """
    cell = nn.LSTMCell(self.features, name="cell")
    zeros = jnp.zeros_like(f_prime)
    c, h, r = zeros, zeros, zeros
    for _ in range(self.read_steps):  # K is small: unrolled.
      (c, h_hat), _ = cell((c, h + r), f_prime)
      h = h_hat + f_prime
      attention = jax.nn.softmax(h @ g.T, axis=-1)  # [M, N]
      r = attention @ g
    return h


def matching_net(
  embedding: nn.Module,
  *,
  ways: int,
  fce: bool = False,
  read_steps: int = 5,
  scale: float = 1.0,
) -> Learner:
  """Matching Networks: attention over the support set, no inner loop.

  The output for a query x̂ is the log-probability log P(y = c | x̂, S) with
  P = sum_i a(x̂, x_i) onehot(y_i) and a = softmax over the support of
  `scale` * cosine(f(x̂, S), g(x_i, S)). It is computed stably as the
  logsumexp of the attention logits over the support items of class c minus
  their logsumexp over the whole support. Since the outputs are
  log-probabilities, `losses.cross_entropy` (whose log-softmax is then the
  identity) is the negative log-likelihood, and `losses.accuracy` applies.

  With `fce=False`, f = g = `embedding`. With `fce=True` (full context
  embeddings), g is a bidirectional LSTM over the support embeddings with a
  skip connection (`SupportEncoder`) and f an attention LSTM reading the
  support encodings `read_steps` times (`AttentionReader`, which sums the
  paper's concatenated [h, r] into the LSTM's hidden state).

  The support and the queries are embedded in separate calls, so an embedding
  with batch-statistics normalization (e.g. `Conv4`) normalizes each set by
  its own statistics.

  meta_params is `{"embed": embedding params}`, plus, with FCE,
  `{"g": support-encoder params, "f": attention-reader params}`. The task
  state is `{"g": [N*K, D] support encodings, "onehot": [N*K, ways] labels}`.

  Args:
    embedding: a flax module mapping float inputs [B, ...] to [B, D].
    ways: the number of classes per episode (>= 2); labels are 0..ways-1.
    fce: use full context embeddings.
    read_steps: K, the attention LSTM's number of reads (>= 1; FCE only).
    scale: > 0, multiplies the cosine similarities before the softmax (an
      inverse temperature; the paper's is 1).

  Returns:
    A classification `Learner` whose outputs are [M, ways] log-probabilities.

  Example:
    Adapting to one task and predicting its queries::

      learner = matching_net(Conv4(None), ways=5, fce=True)
      params = learner.init(key, episode)
      state = learner.adapt(params, episode.support, key)
      log_probs = learner.predict(params, state, episode.query_x)

  References:
    Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, "Matching Networks
    for One Shot Learning", NeurIPS 2016.
  """
  ways = checks.integer("ways", ways, minimum=2)
  read_steps = checks.integer("read_steps", read_steps, minimum=1)
  scale = checks.positive("scale", scale)
  checks.boolean("fce", fce)
  loss_fn, metric_fn, metric_name = losses.for_task("classification")

  def embed(meta_params, x):
    # Without `mutable`, apply returns the output alone (flax's annotation
    # also allows an (output, variables) pair).
    z = cast(
      jax.Array, embedding.apply({"params": meta_params["embed"]}, to_float(x))
    )
    if z.ndim != 2:
      raise ValueError(
        f"The embedding must map [B, ...] to [B, D]; it "
        f"returned shape {z.shape}."
      )
    return z

  def support_encoder(d):
    return SupportEncoder(features=d)

  def attention_reader(d):
    return AttentionReader(features=d, read_steps=read_steps)

  def init(key, episode: Episode):
    embed_key, g_key, f_key = jax.random.split(key, 3)
    x = to_float(episode.support_x)
    # A parameter-free embedding has no "params" collection.
    params = {"embed": embedding.init(embed_key, x).get("params", {})}
    if fce:
      g_prime = embed(params, x)
      d = g_prime.shape[-1]
      params["g"] = support_encoder(d).init(g_key, g_prime)["params"]
      g = support_encoder(d).apply({"params": params["g"]}, g_prime)
      # The support embeddings stand in for queries: only shapes matter.
      params["f"] = attention_reader(d).init(f_key, g_prime, g)["params"]
    return params

  def adapt(meta_params, support, key):
    del key  # deterministic: the support set is only encoded.
    support_x, support_y = support
    g = embed(meta_params, support_x)
    if fce:
      g = support_encoder(g.shape[-1]).apply({"params": meta_params["g"]}, g)
    return {"g": g, "onehot": jax.nn.one_hot(support_y, ways, dtype=g.dtype)}

  def predict(meta_params, task_state, query_x):
    g, onehot = task_state["g"], task_state["onehot"]
    f = embed(meta_params, query_x)
    if fce:
      f = attention_reader(f.shape[-1]).apply(
        {"params": meta_params["f"]}, f, g
      )
    logits = scale * (l2_normalize(f) @ l2_normalize(g).T)  # [M, N]
    per_class = jnp.where(
      onehot[None] > 0, logits[:, :, None], _MASKED
    )  # [M, N, ways]
    return jax.nn.logsumexp(per_class, axis=1) - jax.nn.logsumexp(
      logits, axis=-1, keepdims=True
    )

  return Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
  )
