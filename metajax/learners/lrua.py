"""MANN's memory (Santoro et al. 2016): least-recently-used access (LRUA).

Each step writes to the slots the heads read last and to the least used
ones (erasing the least used slot first), then reads by content: a softmax
over slots of the cosines between each head's key and the memory rows. The
equations are in `metajax.learners.mann`'s module docstring; the controller
that produces the keys, gates and add vectors is `mann.Controller`.
"""

from typing import Any

import jax
import jax.numpy as jnp

from metajax.learners.embedding import l2_normalize

__all__ = ("least_used", "lrua_step")

Array = Any


def least_used(usage: Array, n: int) -> jax.Array:
  """[S] indicator (float) of the `n` slots with the smallest `usage` [S].

  Ties go to the lower slot index, so exactly `n` slots are marked.
  """
  _, index = jax.lax.top_k(-usage, n)
  return jnp.sum(
    jax.nn.one_hot(index, usage.shape[-1], dtype=usage.dtype), axis=0
  )


def lrua_step(
  memory: Array,
  read_weights: Array,
  usage: Array,
  keys: Array,
  alphas: Array,
  *,
  gamma: float,
  adds: Array = None,
  strengths: Array = None,
):
  """One LRUA write followed by a content read (`metajax.learners.mann`'s
  module docstring gives the math).

  Args:
    memory: [S, M] the memory before this step, M_{t-1}.
    read_weights: [H, S] the previous read weights w^r_{t-1} of the H heads.
    usage: [S] the previous usage weights w^u_{t-1}.
    keys: [H, M] this step's keys k_t, one per head (they address the read).
    alphas: [H] this step's write-gate logits.
    gamma: usage decay in [0, 1].
    adds: [H, M] the vectors a_t written, one per head; None writes the keys
      (the paper's equations).
    strengths: [H] key strengths beta_t (> 0) that scale each head's
      cosines before the softmax; None: 1 (the paper's equations).

  Returns:
    (memory M_t [S, M], read weights w^r_t [H, S], write weights w^w_t
    [H, S], usage w^u_t [S], reads r_t [H, M]).
  """
  heads = keys.shape[0]
  least = least_used(usage, heads)  # w^lu_{t-1}
  gate = jax.nn.sigmoid(alphas)[:, None]
  write_weights = gate * read_weights + (1.0 - gate) * least[None]
  erase = jax.nn.one_hot(jnp.argmin(usage), memory.shape[0], dtype=memory.dtype)
  adds = keys if adds is None else adds
  memory = memory * (1.0 - erase)[:, None] + write_weights.T @ adds
  similarity = l2_normalize(keys) @ l2_normalize(memory).T  # [H, S]
  if strengths is not None:
    similarity = strengths[:, None] * similarity
  new_read_weights = jax.nn.softmax(similarity, axis=-1)
  reads = new_read_weights @ memory
  usage = (
    gamma * usage + new_read_weights.sum(axis=0) + write_weights.sum(axis=0)
  )
  return memory, new_read_weights, write_weights, usage, reads
