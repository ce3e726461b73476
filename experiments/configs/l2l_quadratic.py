"""Andrychowicz et al.'s LSTM optimizer on 10-dimensional quadratics.

Run:
  python -m experiments.learned_optimizer \
      --config=experiments/configs/l2l_quadratic.py --workdir=/tmp/l2l

Tasks f(x) = ||W x - y||^2 with W, y and x_0 drawn from N(0, 1) (the paper's
first experiment). The coordinate-wise two-layer LSTM (20 units, updates
scaled by 0.1) is meta-trained by truncated unrolled optimization: horizon
100 steps in segments of 20, 128 tasks per outer step, Adam. SGD, momentum
(0.9) and Adam get the learning rate of `lr_grid` with the lowest mean loss
at the horizon on tuning tasks; all are then compared on held-out tasks at
the horizon and at twice the horizon.

Variants: "" (the run of docs/results.md), smoke (seconds).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = "quadratic"
  c.dim = 10
  c.hidden = 20
  c.layers = 2
  c.output_scale = 0.1
  c.horizon = 100
  c.unroll_steps = 20
  c.batch_size = 128
  c.num_steps = 3_000
  c.outer_lr = 1e-3
  c.first_order = True
  c.lr_grid = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
  c.tune_tasks = 200
  c.eval_tasks = 1_000
  c.seed = 0
  if variant not in ("", "smoke"):
    raise ValueError(
      f"Unknown variant {variant!r} of l2l_quadratic; valid: '', 'smoke'."
    )
  if variant == "smoke":
    c.dim = 3
    c.hidden = 4
    c.horizon = 10
    c.unroll_steps = 5
    c.batch_size = 8
    c.num_steps = 6
    c.lr_grid = (0.01, 0.1)
    c.tune_tasks = 8
    c.eval_tasks = 16
  return c
