"""The coordinate-wise LSTM optimizer of Andrychowicz et al. (2016).

"Learning to learn by gradient descent by gradient descent": a two-layer LSTM
with shared weights reads each coordinate's preprocessed gradient and
outputs that coordinate's update, `output_scale * (w . h_2 + b)`. Meta-train
its weights by unrolled optimization on a task family
(`metajax.learned_optimizers.meta_train_optimizer`); use it like any optax
optimizer afterwards.

References:
  Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford &
  de Freitas, NeurIPS 2016 (Section 3 and Appendix A).
"""

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from metajax import checks
from metajax.inner.meta_lstm import init_lstm_weights, lstm_cell, preprocess

Theta = Any


def init_lstm_optimizer(
  key: chex.PRNGKey, hidden: int = 20, layers: int = 2
) -> Theta:
  """Weights of a `layers`-deep LSTM of `hidden` units and a linear output.

  The output layer starts at zero, so the untrained optimizer makes no
  updates and meta-training starts from a well-defined point.

  Returns:
    {"layers": [one LSTM weights dict per layer], "out": {"w": [hidden],
     "b": []}}.
  """
  hidden = checks.integer("hidden", hidden, minimum=1)
  layers = checks.integer("layers", layers, minimum=1)
  keys = jax.random.split(key, layers)
  return {
    "layers": [
      init_lstm_weights(k, 2 if n == 0 else hidden, hidden)
      for n, k in enumerate(keys)
    ],
    "out": {
      "w": jnp.zeros((hidden,), jnp.float32),
      "b": jnp.zeros((), jnp.float32),
    },
  }


class LstmOptimizerState(NamedTuple):
  """(hidden, cell) per LSTM layer: lists of [n, hidden] arrays over the n
  flattened parameter coordinates.

  Attributes:
    hidden: the hidden states, one [n, hidden] array per layer.
    cell: the cell states, one [n, hidden] array per layer.
  """

  hidden: Any
  cell: Any


def lstm_optimizer(
  theta: Theta, *, output_scale: float = 0.1, p: float = 10.0
) -> optax.GradientTransformation:
  """The learned optimizer with weights `theta` as an optax transformation.

  Args:
    theta: from `init_lstm_optimizer` (or meta-trained); may be traced.
    output_scale: the update is `output_scale` times the LSTM's output (0.1
      in the paper).
    p: the input preprocessing constant.

  Returns:
    An `optax.GradientTransformation` (`update` needs no params).
  """
  layers = theta["layers"]
  hidden = layers[0]["w_h"].shape[0]

  def init_fn(params):
    flat, _ = ravel_pytree(params)
    zeros = jnp.zeros(flat.shape + (hidden,), flat.dtype)
    return LstmOptimizerState(
      hidden=[zeros] * len(layers), cell=[zeros] * len(layers)
    )

  def update_fn(updates, state, params=None):
    del params
    g, unravel = ravel_pytree(updates)  # all coordinates in one LSTM batch
    x = preprocess(g, p).astype(state.hidden[0].dtype)
    hs, cs = [], []
    for weights, h, c in zip(layers, state.hidden, state.cell):
      h, c = lstm_cell(weights, x, h, c)
      hs.append(h)
      cs.append(c)
      x = h
    out = x @ theta["out"]["w"] + theta["out"]["b"]
    return (
      unravel((output_scale * out).astype(g.dtype)),
      LstmOptimizerState(hidden=hs, cell=cs),
    )

  return optax.GradientTransformation(init_fn, update_fn)
