"""MAML on the sinusoid regression family (Finn et al. 2017, Section 5.1).

Run:
  python -m experiments.train --config=experiments/configs/maml_sinusoid.py \
      --workdir=/tmp/maml_sinusoid

Meta-trains with K=10 support and 10 query points, 1 inner SGD step of 0.01,
Adam 1e-3, meta-batch 25, then reports the MSE after adaptation on 600 new
tasks with K=test_shots points. Measured (README table; 600 tasks, 2 CPU
cores, about 5 minutes): K=10 test, 1 step 0.318 +- 0.032; K=5 test, 1 / 5 /
10 steps 0.597 +- 0.062, 0.396 +- 0.076, 0.353 +- 0.075.

Variants (`--config=...maml_sinusoid.py:VARIANT`):
  smoke   a few steps, seconds.
  k5, k10, k20   trained and tested with K=5 / 10 / 20 (the Meta-SGD
                 paper's rows; k10 is the default).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.learner = "maml"
  c.dataset = "sinusoid"
  c.model = "mlp"
  c.hidden = (40, 40)
  c.first_order = False
  c.first_order_steps = 0  # MAML++: first order for this many steps, then second
  c.remat = False
  c.lslr = False  # MAML++ per-layer per-step learned inner rates
  c.multi_step_loss = False  # MAML++ multi-step loss (uniform weights)
  c.ways = 1  # unused for regression; kept so every config has the field
  c.test_ways = ml_collections.config_dict.placeholder(int)
  c.shots = 10
  c.test_shots = ml_collections.config_dict.placeholder(int)  # None: same as shots
  c.queries = 10
  c.test_queries = ml_collections.config_dict.placeholder(int)
  c.meta_batch_size = 25
  c.inner_steps = 1
  c.test_inner_steps = ml_collections.config_dict.placeholder(int)  # None: same as inner_steps
  c.inner_lr = 0.01
  c.outer_lr = 1e-3
  c.outer_opt = "adam"
  c.outer_lr_schedule = "constant"
  c.num_steps = 70_000
  c.eval_episodes = 600
  c.val_every = 5_000
  c.val_episodes = 100
  # Evaluate (and load_run) the meta-parameters of the best validation,
  # kept in <workdir>/best, instead of the last ones (needs val_every).
  c.select_on_validation = False
  c.checkpoint_every = 5_000
  c.log_every = 500
  c.seed = 0
  c.on_nonfinite = "raise"  # or "skip": drop non-finite steps
  # The meta-batch's tasks are sharded over this many devices (None: all).
  c.num_devices = ml_collections.config_dict.placeholder(int)
  # Tasks each device adapts at once (None: automatic, 1 on CPU where it is
  # fastest, all on GPU/TPU; smaller needs less memory).
  c.tasks_per_chunk = ml_collections.config_dict.placeholder(int)
  c.data_dir = ""
  c.paper_result = "Meta-SGD paper, MAML 10-shot: 0.77 +- 0.11"
  if variant == "smoke":
    c.num_steps = 20
    c.eval_episodes = 20
    c.val_every = 10
    c.val_episodes = 10
    c.checkpoint_every = 10
    c.log_every = 5
  elif variant in ("k5", "k10", "k20"):
    c.shots = int(variant[1:])
    c.queries = c.shots
    c.paper_result = {
        "k5": "Meta-SGD paper, MAML 5-shot: 1.13 +- 0.18",
        "k10": "Meta-SGD paper, MAML 10-shot: 0.77 +- 0.11",
        "k20": "Meta-SGD paper, MAML 20-shot: 0.48 +- 0.08"}[variant]
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of maml_sinusoid; valid: "
                     "'', 'smoke', 'k5', 'k10', 'k20'.")
  return c
