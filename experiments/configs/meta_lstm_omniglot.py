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

import ml_collections

PAPER = {  # Ravi & Larochelle, Table 1 (miniImageNet; no Omniglot numbers)
    (5, 1): "43.44 +- 0.77 (miniImageNet)",
    (5, 5): "60.60 +- 0.71 (miniImageNet)"}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.learner = "meta_lstm"
  c.dataset = "omniglot"
  c.model = "conv4"
  c.filters = 32
  c.pooling = "stride"
  c.conv_impl = "patches"
  c.lstm_hidden = 20  # units of the meta-learner's first LSTM layer
  # Initial input-gate bias: i starts near 0.1 (the paper's [-5, -4] gives
  # 0.01, a step too small to adapt in 5 updates within our budget).
  c.lstm_input_bias = (-2.5, -2.0)
  c.first_order = True
  c.first_order_steps = 0
  c.remat = False
  c.split = "seeded"
  c.split_seed = 0
  c.num_train = ml_collections.config_dict.placeholder(int)
  c.num_val = ml_collections.config_dict.placeholder(int)
  c.image_size = 28
  c.rotations = True
  c.ways = 5
  c.test_ways = ml_collections.config_dict.placeholder(int)
  c.shots = 1
  c.test_shots = ml_collections.config_dict.placeholder(int)
  c.queries = 15
  c.test_queries = ml_collections.config_dict.placeholder(int)
  c.meta_batch_size = 4
  c.inner_steps = 5
  c.test_inner_steps = 5
  c.outer_lr = 1e-3
  c.outer_opt = "adam"
  c.outer_lr_schedule = "constant"
  c.outer_grad_clip = 0.25
  c.num_steps = 1_000  # the README budget (2 busy CPU cores, about 2 hours)
  c.eval_episodes = 600
  c.val_every = 500
  c.val_episodes = 100
  c.checkpoint_every = 250
  c.log_every = 100
  c.seed = 0
  c.on_nonfinite = "raise"
  c.data_dir = ""
  sizes = {"": (5, 1), "5w1s": (5, 1), "5w5s": (5, 5), "smoke": (5, 1)}
  if variant not in sizes:
    raise ValueError(f"Unknown variant {variant!r} of meta_lstm_omniglot; "
                     f"valid: {sorted(sizes)}.")
  c.ways, c.shots = sizes[variant]
  c.paper_result = (f"Ravi & Larochelle, {c.ways}-way {c.shots}-shot: "
                    f"{PAPER[(c.ways, c.shots)]}")
  if variant == "smoke":
    c.filters = 8
    c.lstm_hidden = 4
    c.image_size = 14
    c.meta_batch_size = 2
    c.queries = 2
    c.inner_steps = 2
    c.test_inner_steps = 2
    c.num_steps = 4
    c.eval_episodes = 6
    c.val_every = 2
    c.val_episodes = 2
    c.checkpoint_every = 2
    c.log_every = 1
  return c
