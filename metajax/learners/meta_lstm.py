"""The Meta-Learner LSTM (Ravi & Larochelle 2017) as a MAML-family learner.

Its meta-parameters::

  meta_params = {"params": the learner's initial weights c_0,
                 "inner": the LSTM meta-learner's weights theta}

`adapt` runs `inner_steps` updates of `metajax.inner.meta_lstm(theta)` on the
support loss (the cell state is the weights); the query loss after the last
one is the meta-objective, differentiated with respect to both c_0 and theta.
`first_order=True` (the paper's choice) drops the gradient through the
learner's gradients and loss, which are the meta-learner's inputs.
"""

from typing import Tuple

import flax.linen as nn
import jax

from metajax import checks
from metajax.inner.meta_lstm import init_meta_lstm, meta_lstm
from metajax.learners.maml import maml
from metajax.types import Learner


def meta_learner_lstm(
  model: nn.Module,
  *,
  inner_steps: int = 5,
  first_order: bool = True,
  hidden: int = 20,
  input_bias: Tuple[float, float] = (-5.0, -4.0),
  task: str = "classification",
  remat: bool = False,
  **kwargs,
) -> Learner:
  """The Meta-Learner LSTM learner.

  Args:
    model: a flax module (Conv4 with batch statistics, as in the paper: the
      statistics of the current set, at training and test time alike).
    inner_steps: updates of the learned optimizer per task (T).
    first_order: ignore second derivatives (the paper's setting).
    hidden: units of the meta-learner's first LSTM layer.
    input_bias: range of the input gate's initial bias (see
      `metajax.inner.init_meta_lstm`); the default starts with a step of
      about 0.01, as in the paper.
    task: "classification" or "regression".
    remat: rematerialize each inner step in the backward pass.
    **kwargs: further `maml` options (`trainable`, `multi_step_loss`).

  Returns:
    A `Learner`; its `init` draws c_0 and theta from independent keys.

  References:
    Ravi & Larochelle, "Optimization as a Model for Few-Shot Learning",
    ICLR 2017.
  """
  hidden = checks.integer("hidden", hidden, minimum=1)
  base = maml(
    model,
    inner_steps=inner_steps,
    first_order=first_order,
    inner_opt_fn=meta_lstm,
    inner_hparams=lambda _: init_meta_lstm(jax.random.key(0), hidden),
    task=task,
    remat=remat,
    **kwargs,
  )

  def init(key, episode):
    model_key, lstm_key = jax.random.split(key)
    meta_params = base.init(model_key, episode)
    return {
      "params": meta_params["params"],
      "inner": init_meta_lstm(lstm_key, hidden, input_bias=input_bias),
    }

  return base._replace(init=init)
