"""The Meta-Learner LSTM (Ravi & Larochelle 2017) as an optax transformation.

The learner's parameters are the cell state of a coordinate-wise LSTM:

    c_t = f_t * c_{t-1} - i_t * grad_t

with an input gate i_t (a learned, adaptive step size) and a forget gate f_t
(a learned, adaptive weight decay):

    i_t = sigmoid(w_I . [x_t, c_{t-1}, i_{t-1}] + b_I)
    f_t = sigmoid(w_F . [x_t, c_{t-1}, f_{t-1}] + b_F)

where x_t is the hidden state of a first, ordinary LSTM layer that reads the
preprocessed gradient and loss of every coordinate (Andrychowicz et al. 2016's
log-magnitude and sign), as in the paper's two-layer meta-learner. All weights
(`theta`) are shared across coordinates, so one small set of numbers
optimizes a network of any size.

`meta_lstm(theta)` is an ordinary `optax.GradientTransformationExtraArgs`:
its `update` needs `params` (the cell state) and the loss as `value=`. Give it
to any MAML-family learner as the inner optimizer (`learners.meta_lstm` does,
with theta and the learner's initialization c_0 as meta-parameters), or train
any model with it (`optax.chain` works).

References:
  Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning",
  ICLR 2017.
  Andrychowicz et al., "Learning to learn by gradient descent by gradient
  descent", NeurIPS 2016 (Appendix A: input preprocessing).
"""

from typing import Any, NamedTuple, Tuple

import chex
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from metajax import checks

Theta = Any  # the meta-learner's weights, a dict (see init_meta_lstm)


def preprocess(x: chex.Array, p: float = 10.0) -> chex.Array:
  """Andrychowicz et al.'s scaling of gradients and losses: [..., 2].

  `(log|x| / p, sign(x))` where `|x| >= e^-p`, else `(-1, e^p x)`; both
  halves are of order one whatever the magnitude of x.
  """
  x = jnp.asarray(x)
  threshold = jnp.exp(-p).astype(x.dtype)
  big = jnp.abs(x) >= threshold
  # maximum() keeps log finite (and its gradient) on the branch not taken.
  magnitude = jnp.where(
    big, jnp.log(jnp.maximum(jnp.abs(x), threshold)) / p, -1.0
  )
  direction = jnp.where(big, jnp.sign(x), jnp.exp(p).astype(x.dtype) * x)
  return jnp.stack([magnitude, direction], axis=-1)


def lstm_cell(weights, x, hidden, cell):
  """One step of a standard LSTM, batched over leading axes.

  Args:
    weights: {"w_x": [D, 4H], "w_h": [H, 4H], "b": [4H]}, gate order
      (input, forget, candidate, output).
    x: [..., D] inputs.
    hidden: [..., H] previous hidden state.
    cell: [..., H] previous cell state.

  Returns:
    (hidden, cell) of the step.
  """
  z = x @ weights["w_x"] + hidden @ weights["w_h"] + weights["b"]
  i, f, g, o = jnp.split(z, 4, axis=-1)
  cell = jax.nn.sigmoid(f) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(cell), cell


def init_lstm_weights(key: chex.PRNGKey, inputs: int, hidden: int):
  """PyTorch's LSTM initialization: uniform in +-1/sqrt(hidden)."""
  bound = 1.0 / jnp.sqrt(hidden)
  kx, kh, kb = jax.random.split(key, 3)
  uniform = lambda k, s: jax.random.uniform(k, s, jnp.float32, -bound, bound)
  return {
    "w_x": uniform(kx, (inputs, 4 * hidden)),
    "w_h": uniform(kh, (hidden, 4 * hidden)),
    "b": uniform(kb, (4 * hidden,)),
  }


def init_meta_lstm(
  key: chex.PRNGKey,
  hidden: int = 20,
  *,
  forget_bias: Tuple[float, float] = (4.0, 6.0),
  input_bias: Tuple[float, float] = (-5.0, -4.0),
) -> Theta:
  """The meta-learner's initial weights, as in Ravi & Larochelle's code.

  The first LSTM layer (4 inputs: preprocessed gradient and loss) has
  `hidden` units. The gate weights are uniform in +-0.01; the forget bias is
  uniform in `forget_bias` (default [4, 6]: f starts near 1, no weight decay)
  and the input bias in `input_bias` (default [-5, -4]: i starts near 0.01, a
  small gradient step), so the meta-learner starts as plain gradient descent.
  Raise `input_bias` to start from a larger step (e.g. (-2.5, -2) gives i
  near 0.1).

  Returns:
    {"lstm": {"w_x", "w_h", "b"}, "forget": {"w": [hidden + 2], "b": []},
     "input": {"w": [hidden + 2], "b": []}}.
  """
  hidden = checks.integer("hidden", hidden, minimum=1)
  for name, (low, high) in (
    ("forget_bias", forget_bias),
    ("input_bias", input_bias),
  ):
    if not low <= high:
      raise ValueError(f"{name} is a range (low, high), got {(low, high)}.")
  k_lstm, kf, ki, kbf, kbi = jax.random.split(key, 5)
  small = lambda k: jax.random.uniform(
    k, (hidden + 2,), jnp.float32, -0.01, 0.01
  )
  return {
    "lstm": init_lstm_weights(k_lstm, 4, hidden),
    "forget": {
      "w": small(kf),
      "b": jax.random.uniform(kbf, (), jnp.float32, *forget_bias),
    },
    "input": {
      "w": small(ki),
      "b": jax.random.uniform(kbi, (), jnp.float32, *input_bias),
    },
  }


class MetaLstmState(NamedTuple):
  """Per-coordinate recurrent state over the flattened parameters (all leaves
  concatenated in `jax.tree.leaves` order, n coordinates in all).

  Attributes:
    hidden: [n, hidden], the first LSTM layer's hidden state.
    cell: [n, hidden], the first LSTM layer's cell state.
    forget: [n], the previous forget gate values.
    input: [n], the previous input gate values.
  """

  hidden: Any
  cell: Any
  forget: Any
  input: Any


def _gate(weights, x, theta_prev, gate_prev):
  w = weights["w"]
  return jax.nn.sigmoid(
    x @ w[:-2] + theta_prev * w[-2] + gate_prev * w[-1] + weights["b"]
  )


def meta_lstm(
  theta: Theta, *, p: float = 10.0
) -> optax.GradientTransformationExtraArgs:
  """The Meta-Learner LSTM with weights `theta` as an optax transformation.

  `update(grads, state, params, value=loss)` returns updates such that
  `optax.apply_updates(params, updates)` is the new cell state
  f_t * params - i_t * grads.

  Args:
    theta: from `init_meta_lstm` (or meta-trained). Its arrays may be traced
      values, so the outer gradient reaches them.
    p: the preprocessing constant of Andrychowicz et al.

  Returns:
    An `optax.GradientTransformationExtraArgs`.
  """
  hidden = theta["lstm"]["w_h"].shape[0]

  def init_fn(params):
    flat, _ = ravel_pytree(params)
    zeros = jnp.zeros(flat.shape + (hidden,), flat.dtype)
    return MetaLstmState(
      hidden=zeros,
      cell=zeros,
      forget=jnp.zeros_like(flat),
      input=jnp.zeros_like(flat),
    )

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del extra_args
    if params is None or value is None:
      raise ValueError(
        "meta_lstm's update needs the parameters (they are its cell state) "
        "and the loss: update(grads, state, params, value=loss)."
      )
    # One coordinate-wise LSTM over all the parameters at once: one large
    # matmul per step rather than one small one per leaf.
    g, unravel = ravel_pytree(updates)
    c_prev, _ = ravel_pytree(params)
    loss_in = preprocess(jnp.asarray(value, g.dtype), p)  # [2]
    x = jnp.concatenate(
      [preprocess(g, p), jnp.broadcast_to(loss_in, g.shape + (2,))], -1
    )
    h, c = lstm_cell(
      theta["lstm"], x.astype(state.hidden.dtype), state.hidden, state.cell
    )
    f = _gate(theta["forget"], h, c_prev, state.forget).astype(g.dtype)
    i = _gate(theta["input"], h, c_prev, state.input).astype(g.dtype)
    new = f * c_prev - i * g
    return unravel(new - c_prev), MetaLstmState(
      hidden=h, cell=c, forget=f, input=i
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
