"""The Meta-Learner LSTM (Ravi & Larochelle 2017) on Omniglot N-way K-shot.

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/meta_lstm_omniglot.py:5w5s \
      --workdir=/tmp/meta_lstm_omniglot

Conv4 with 32 filters and batch statistics of the current set (training and
test alike), as in the paper; the learner's initial weights c_0 and the LSTM
meta-learner's weights theta are meta-parameters. T = 5 updates of the
learned optimizer on the whole support set, at training and at test time,
starting from an input gate near 0.1 (the paper starts at 0.01);
first-order meta-gradient (the paper ignores second derivatives); Adam 1e-3
with the meta-gradient clipped to norm 0.25 (the paper's clip).

Variants (`--config=...meta_lstm_omniglot.py:VARIANT`): "" (5-way 1-shot),
5w1s, 5w5s, smoke (seconds).
"""

from experiments.configs import _base as base
from experiments.configs import maml_omniglot

PAPER = {  # Ravi & Larochelle, Table 1 (miniImageNet; no Omniglot numbers)
  (5, 1): "43.44 +- 0.77 (miniImageNet)",
  (5, 5): "60.60 +- 0.71 (miniImageNet)",
}


def get_config(variant: str = ""):
  maml_omniglot.check_variant(
    variant, "meta_lstm_omniglot", ("", "5w1s", "5w5s", "smoke")
  )
  c = maml_omniglot.omniglot_config(variant)  # data, sizes, smoke sizes
  c.learner = "meta_learner_lstm"
  base.link(c, "inner_steps", 1)
  base.link(c, "test_inner_steps", 3, option="inner_steps", test=True)
  c.learner_kwargs.hidden = 4 if variant == "smoke" else 20  # first LSTM layer
  # Initial input-gate bias: i starts near 0.1 (the paper's [-5, -4] gives
  # 0.01, a step too small to adapt in 5 updates within our budget).
  c.learner_kwargs.input_bias = (-2.5, -2.0)
  c.learner_kwargs.first_order = True
  c.learner_kwargs.remat = False
  c.outer_grad_clip = 0.25
  c.paper_result = (
    f"Ravi & Larochelle, {c.ways}-way {c.shots}-shot: "
    f"{PAPER[(c.ways, c.shots)]}"
  )
  if variant == "smoke":
    base.smoke(c)
    c.inner_steps = c.test_inner_steps = 2
    return c
  c.model_kwargs.filters = 32
  c.meta_batch_size = 4
  c.inner_steps = c.test_inner_steps = 5
  c.num_steps = 1_000  # the docs/results.md budget (2 busy CPU cores, 74 min)
  c.checkpoint_every = 250
  return c
