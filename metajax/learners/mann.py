"""Memory-Augmented Neural Networks (Santoro et al. 2016) as a `Learner`.

A black-box learner: an LSTM controller with an external memory reads the
episode as a sequence. Step t gets the example x_t and the one-hot label of
the PREVIOUS step y_{t-1}, so it must predict y_t from what it stored of the
earlier pairs. Memory is read by content (cosine similarity, softmax over
slots) and written by least-recently-used access (LRUA,
`metajax.learners.lrua`):

    w^lu_{t-1}(i) = 1 if slot i is one of the n least used (usage w^u_{t-1})
    w^w_t = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}
    M_{t-1}(argmin w^u_{t-1}) <- 0               (the least used slot is erased)
    M_t = M_{t-1} + sum_heads w^w_t a_t^T
    w^r_t = softmax_i(beta_t cosine(k_t, M_t(i))),  r_t = w^r_t M_t
    w^u_t = gamma w^u_{t-1} + sum_heads (w^r_t + w^w_t)

with a key k_t = tanh(W_k h_t), an add vector a_t = tanh(W_a h_t), a key
strength beta_t = 1 + softplus(W_beta h_t) and a gate alpha_t = W_alpha h_t
per head, n the number of read heads, and the output logits W_o [h_t, r_t].
The LSTM's input is [embedding(x_t), y_{t-1}, r_{t-1}].

The paper's equations write the key itself (a_t = k_t: `add_vectors=False`)
and have no key strength (beta_t = 1: `key_strength=False`). Then the slot
written at step t matches k_t exactly (cosine 1), so every read leans on the
slot just written, which holds no label yet, and a softmax of cosines (in
[-1, 1]) over 128 slots is nearly flat. With an add vector of its own and
the NTM's key strength, each read can find an older slot and weigh it
sharply, and MANN learns much faster (docs/results.md, "MANN"), so both are
the default.

In the `Learner` interface, `adapt` reads the support set (in an order drawn
from its key) from a fresh memory, and `predict` feeds each query as the next
step after the support, with the last support label as its label input, from
that same post-support state: queries never see each other.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import losses
from metajax import checks
from metajax.learners.embedding import embed_each, to_float
from metajax.learners.lrua import lrua_step
from metajax.learners.sequence import support_sequence
from metajax.types import Episode, Learner

__all__ = (
  "MANNState",
  "fresh_state",
  "mann",
  "online_logits_fn",
)

Array = Any


class MANNState(NamedTuple):
  """The recurrent state of MANN after some steps of one sequence.

  Attributes:
    lstm: `(c [C], h [C])`, the controller's carry.
    memory: [S, M].
    read_weights: [H, S].
    usage: [S].
    reads: [H * M], `r_{t-1}` flattened.
    label: [ways], the last support label (set by adapt).
  """

  lstm: Any  # (c [C], h [C]), the controller's carry
  memory: jax.Array  # [S, M]
  read_weights: jax.Array  # [H, S]
  usage: jax.Array  # [S]
  reads: jax.Array  # [H * M], r_{t-1} flattened
  label: jax.Array  # [ways], the last support label (set by adapt)


class Controller(nn.Module):
  """One step of MANN: LSTM controller, LRUA write, read, output.

  Attributes:
    ways: output classes.
    controller_size: the LSTM's hidden size.
    memory_size: M, the width of a memory slot.
    read_heads: H.
    gamma: usage decay.
    add_vectors: write an add vector of each head's own (else its key).
    key_strength: scale each head's cosines by a key strength of its own
      (else 1).
  """

  ways: int
  controller_size: int
  memory_size: int
  read_heads: int
  gamma: float
  add_vectors: bool = True
  key_strength: bool = True

  @nn.compact
  def __call__(self, state: MANNState, features: Array, label_input: Array):
    """(state, x features [D], y_{t-1} one-hot [ways]) -> (state, logits)."""
    cell = nn.LSTMCell(self.controller_size, name="lstm")
    lstm, h = cell(
      state.lstm, jnp.concatenate([features, label_input, state.reads])
    )
    keys = jnp.tanh(
      nn.Dense(self.read_heads * self.memory_size, name="keys")(h)
    ).reshape(self.read_heads, -1)
    adds = None
    if self.add_vectors:
      adds = jnp.tanh(
        nn.Dense(self.read_heads * self.memory_size, name="adds")(h)
      ).reshape(self.read_heads, -1)
    strengths = None
    if self.key_strength:
      strengths = 1.0 + jax.nn.softplus(
        nn.Dense(self.read_heads, name="strengths")(h)
      )
    alphas = nn.Dense(self.read_heads, name="alphas")(h)
    memory, read_weights, _, usage, reads = lrua_step(
      state.memory,
      state.read_weights,
      state.usage,
      keys,
      alphas,
      gamma=self.gamma,
      adds=adds,
      strengths=strengths,
    )
    reads = reads.reshape(-1)
    logits = nn.Dense(self.ways, name="output")(jnp.concatenate([h, reads]))
    return MANNState(
      lstm, memory, read_weights, usage, reads, state.label
    ), logits


def mann(
  embedding: nn.Module,
  *,
  ways: int,
  memory_slots: int = 128,
  memory_size: int = 40,
  controller_size: int = 200,
  read_heads: int = 4,
  gamma: float = 0.95,
  online_loss: bool = False,
  add_vectors: bool = True,
  key_strength: bool = True,
) -> Learner:
  """Memory-Augmented Neural Networks (LSTM controller + LRUA memory).

  meta_params = {"embed": the embedding's params, "controller": the LSTM and
  the key, gate and output layers}. The task state is the `MANNState` after
  the support sequence (its order drawn from adapt's key); `predict` steps
  each query from it independently (`jax.vmap` over queries), with the last
  support label as the query's label input, and returns [m, ways] logits.
  The memory starts every episode at 1e-6 everywhere, with zero usage and
  read weights and a zero LSTM state. Each example is embedded alone
  (`embed_each`).

  Args:
    embedding: flax module mapping float inputs [B, ...] to [B, D], e.g.
      `Conv4(None)`; the paper fed flattened 20x20 pixels.
    ways: classes per episode (>= 2).
    memory_slots: S (the paper's 128).
    memory_size: M (the paper's 40).
    controller_size: the LSTM's hidden size (the paper's 200).
    read_heads: H (the paper's 4); also the number of least-used slots.
    gamma: usage decay in [0, 1].
    add_vectors: each head writes an add vector a_t of its own; False
      writes its key k_t, as the paper's equations read (see the module
      docstring: that model learns much more slowly).
    key_strength: each head scales its cosines by beta_t = 1 +
      softplus(W_beta h_t) before the softmax, as the NTM's reads do; False:
      no scale, as the paper's equations read.
    online_loss: train as the paper did (`task_loss`): the whole episode,
      support and queries, as one sequence in a random order with each
      step's label given at the next step, and the loss of every step;
      instead of the queries' loss from the post-support state. Evaluation
      is the same either way (adapt on the support, predict the queries).

  Returns:
    A classification `Learner`.

  References:
    Santoro, Bartunov, Botvinick, Wierstra & Lillicrap, "Meta-Learning with
    Memory-Augmented Neural Networks", ICML 2016.
  """
  return _mann(
    embedding,
    ways=ways,
    memory_slots=memory_slots,
    memory_size=memory_size,
    controller_size=controller_size,
    read_heads=read_heads,
    gamma=gamma,
    online_loss=online_loss,
    add_vectors=add_vectors,
    key_strength=key_strength,
  )[0]


def fresh_state(
  *,
  ways: int,
  memory_slots: int,
  memory_size: int,
  controller_size: int,
  read_heads: int,
) -> MANNState:
  """The state before the first step of a sequence: a zero controller, a
  memory of 1e-6 (cosines stay finite), nothing read or used yet."""
  zeros = jnp.zeros((controller_size,), jnp.float32)
  return MANNState(
    lstm=(zeros, zeros),
    memory=jnp.full((memory_slots, memory_size), 1e-6, jnp.float32),
    read_weights=jnp.zeros((read_heads, memory_slots), jnp.float32),
    usage=jnp.zeros((memory_slots,), jnp.float32),
    reads=jnp.zeros((read_heads * memory_size,), jnp.float32),
    label=jnp.zeros((ways,), jnp.float32),
  )


def _model(
  *,
  ways: int,
  memory_slots: int = 128,
  memory_size: int = 40,
  controller_size: int = 200,
  read_heads: int = 4,
  gamma: float = 0.95,
  online_loss: bool = False,
  add_vectors: bool = True,
  key_strength: bool = True,
):
  """`mann`'s options checked: (the `Controller`, a function of no arguments
  giving its `fresh_state`, online_loss)."""
  for name, value, low in (
    ("ways", ways, 2),
    ("memory_slots", memory_slots, 1),
    ("memory_size", memory_size, 1),
    ("controller_size", controller_size, 1),
    ("read_heads", read_heads, 1),
  ):
    checks.integer(name, value, minimum=low)
  if read_heads > memory_slots:
    raise ValueError(
      f"read_heads={read_heads} needs at least as many "
      f"memory_slots, got {memory_slots}."
    )
  checks.number("gamma", gamma, low=0.0, high=1.0)
  for name, value in (
    ("online_loss", online_loss),
    ("add_vectors", add_vectors),
    ("key_strength", key_strength),
  ):
    checks.boolean(name, value)
  controller = Controller(
    ways=int(ways),
    controller_size=int(controller_size),
    memory_size=int(memory_size),
    read_heads=int(read_heads),
    gamma=float(gamma),
    add_vectors=bool(add_vectors),
    key_strength=bool(key_strength),
  )
  initial_state = lambda: fresh_state(
    ways=ways,
    memory_slots=memory_slots,
    memory_size=memory_size,
    controller_size=controller_size,
    read_heads=read_heads,
  )
  return controller, initial_state, online_loss


def _mann(embedding: nn.Module, **options):
  """(`mann` learner, its online function); `options` are `mann`'s."""
  controller, initial_state, online_loss = _model(**options)
  ways = options["ways"]
  loss_fn, metric_fn, metric_name = losses.for_task("classification")

  def step(meta_params, state, features, label_input):
    return controller.apply(
      {"params": meta_params["controller"]}, state, features, label_input
    )

  def run(meta_params, state, features, label_inputs):
    def body(carry, inputs):
      return step(meta_params, carry, *inputs)

    return jax.lax.scan(body, state, (features, label_inputs))

  def init(key, episode: Episode):
    embed_key, controller_key = jax.random.split(key)
    x = to_float(episode.support_x[:1])
    params = {"embed": embedding.init(embed_key, x).get("params", {})}
    features = embed_each(embedding, params["embed"], x)[0]
    params["controller"] = controller.init(
      controller_key, initial_state(), features, jnp.zeros((ways,), jnp.float32)
    )["params"]
    return params

  def adapt(meta_params, support, key):
    x, label_inputs, labels = support_sequence(
      support, key, ways, label_shift=1
    )
    features = embed_each(embedding, meta_params["embed"], x)
    state, _ = run(meta_params, initial_state(), features, label_inputs)
    return state._replace(
      label=jax.nn.one_hot(labels[-1], ways, dtype=jnp.float32)
    )

  def predict(meta_params, state, query_x):
    features = embed_each(embedding, meta_params["embed"], query_x)
    return jax.vmap(lambda f: step(meta_params, state, f, state.label)[1])(
      features
    )

  def online(meta_params, x, labels):
    features = embed_each(embedding, meta_params["embed"], x)
    onehot = jax.nn.one_hot(labels, ways, dtype=jnp.float32)
    label_inputs = jnp.concatenate([jnp.zeros_like(onehot[:1]), onehot[:-1]])
    return run(meta_params, initial_state(), features, label_inputs)[1]

  def online_task_loss(meta_params, episode: Episode, key):
    # The whole episode as one labelled sequence, built as adapt builds the
    # support's.
    x, label_inputs, labels = support_sequence(
      (
        jnp.concatenate([episode.support_x, episode.query_x]),
        jnp.concatenate([episode.support_y, episode.query_y]),
      ),
      key,
      ways,
      label_shift=1,
    )
    features = embed_each(embedding, meta_params["embed"], x)
    logits = run(meta_params, initial_state(), features, label_inputs)[1]
    return loss_fn(logits, labels), metric_fn(logits, labels)

  learner = Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
    task_loss=online_task_loss if online_loss else None,
  )
  return learner, online


def online_logits_fn(embedding: nn.Module, **kwargs):
  """`(meta_params, x, labels) -> [T, ways] logits`: MANN labelling ONLINE.

  The paper's protocol: step t sees x_t and y_{t-1} (every earlier label)
  and predicts y_t, from a fresh memory, in the given order (x [T, ...],
  labels [T] int). Takes the arguments of `mann` and uses the same
  meta_params; `accuracy_by_instance` scores its outputs.
  """
  return _mann(embedding, **kwargs)[1]
