"""MAML on the sinusoid regression family (Finn et al. 2017, Section 5.1).

Run:
  python -m experiments.train --config=experiments/configs/maml_sinusoid.py \
      --workdir=/tmp/maml_sinusoid

Meta-trains with K=10 support and 10 query points, 1 inner SGD step of 0.01,
Adam 1e-3, meta-batch 25, then reports the MSE after adaptation on 600 new
tasks with K=test_shots points. Measured (docs/results.md; 600 tasks, 2 CPU
cores, about 5 minutes): K=10 test, 1 step 0.318 +- 0.032; K=5 test, 1 / 5 /
10 steps 0.597 +- 0.062, 0.396 +- 0.076, 0.353 +- 0.075.

Variants (`--config=...maml_sinusoid.py:VARIANT`):
  smoke   a few steps, seconds.
  k5, k10, k20   trained and tested with K=5 / 10 / 20 (the Meta-SGD
                 paper's rows; k10 is the default).
"""

import ml_collections

from experiments.configs import _base as base

PAPER = {5: "1.13 +- 0.18", 10: "0.77 +- 0.11", 20: "0.48 +- 0.08"}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  if variant not in ("", "smoke", "k5", "k10", "k20"):
    raise ValueError(
      f"Unknown variant {variant!r} of maml_sinusoid; valid: "
      "'', 'smoke', 'k5', 'k10', 'k20'."
    )
  c = base.get_config()
  c.learner = "maml"
  base.link(c, "inner_lr", 0.01)
  base.link(c, "inner_steps", 1)
  # None: the training steps.
  base.link(
    c,
    "test_inner_steps",
    base.placeholder(int),
    option="inner_steps",
    test=True,
  )
  c.learner_kwargs.first_order = False
  c.learner_kwargs.remat = False
  c.learner_kwargs.lslr = False  # MAML++ per-layer per-step learned rates
  c.learner_kwargs.lslr_steps = c.get_ref("inner_steps")
  c.learner_kwargs.multi_step_loss = False  # MAML++ multi-step loss
  c.learner_kwargs.first_order_steps = 0  # MAML++: first order, then second
  c.dataset = "sinusoid"
  c.model = "mlp"
  c.model_kwargs.hidden = (40, 40)
  c.ways = 1  # unused for regression
  c.shots = 10
  c.queries = 10
  c.meta_batch_size = 25
  c.num_steps = 70_000
  c.val_every = 5_000
  c.checkpoint_every = 5_000
  c.log_every = 500
  c.paper_result = f"Meta-SGD paper, MAML 10-shot: {PAPER[10]}"
  if variant == "smoke":
    c.num_steps = 20
    c.eval_episodes = 20
    c.val_every = 10
    c.val_episodes = 10
    c.checkpoint_every = 10
    c.log_every = 5
  elif variant:
    c.shots = c.queries = int(variant[1:])
    c.paper_result = f"Meta-SGD paper, MAML {c.shots}-shot: {PAPER[c.shots]}"
  return c
