"""MAML on Omniglot N-way K-shot (Finn et al. 2017, Section 5.2).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/maml_omniglot.py --workdir=/tmp/maml_omniglot

Conv4 (64 filters, stride-2 convs, batch statistics), 28x28 images with
rotations as new classes, 1 inner SGD step of 0.4 (3 at test), Adam 1e-3,
meta-batch 32. Characters are split by `split`: "seeded" works on any set of
zips (the small sets alone included); "vinyals" needs the full release.

Variants (`--config=...maml_omniglot.py:VARIANT`): "" (5-way 1-shot),
5w5s, 20w1s, 20w5s, smoke (seconds).

Results on the 73 held-out characters (x4 rotations) of the small sets, 600
test episodes (README table): 5w1s 97.43 +- 0.27, 5w5s 98.73 +- 0.17,
20w1s 85.59 +- 0.39, 20w5s 93.52 +- 0.24 (%), trained on one H100.
"""

import ml_collections

PAPER = {  # MAML paper, Table 1, full Omniglot
    (5, 1): "98.7 +- 0.4", (5, 5): "99.9 +- 0.1",
    (20, 1): "95.8 +- 0.3", (20, 5): "98.9 +- 0.2"}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.learner = "maml"
  c.dataset = "omniglot"
  c.model = "conv4"
  c.filters = 64
  c.pooling = "stride"
  c.norm = True  # batch norm with the batch's statistics (False: none)
  c.conv_impl = "patches"
  c.first_order = False
  c.first_order_steps = 0  # MAML++: first order for this many steps, then second
  c.remat = False
  c.lslr = False  # MAML++ per-layer per-step learned inner rates
  c.multi_step_loss = False  # MAML++ multi-step loss (uniform weights)
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
  c.meta_batch_size = 32
  c.inner_steps = 1
  c.test_inner_steps = 3
  c.inner_lr = 0.4
  c.outer_lr = 1e-3
  c.outer_opt = "adam"
  c.outer_lr_schedule = "constant"
  c.eval_episodes = 600
  c.val_every = 500
  c.val_episodes = 100
  # Evaluate (and load_run) the meta-parameters of the best validation,
  # kept in <workdir>/best, instead of the last ones (needs val_every).
  c.select_on_validation = False
  c.checkpoint_every = 500
  c.log_every = 100
  c.seed = 0
  c.on_nonfinite = "raise"  # or "skip": drop non-finite steps
  # The meta-batch's tasks are sharded over this many devices (None: all).
  c.num_devices = ml_collections.config_dict.placeholder(int)
  # Tasks each device adapts at once (None: automatic, 1 on CPU where it is
  # fastest, all on GPU/TPU; smaller needs less memory).
  c.tasks_per_chunk = ml_collections.config_dict.placeholder(int)
  # Conv4's matmul inputs: "float32" or "bfloat16" (float32 accumulation).
  c.compute_dtype = "float32"
  c.data_dir = ""
  sizes = {"": (5, 1), "5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1),
           "20w5s": (20, 5), "smoke": (5, 1)}
  if variant not in sizes:
    raise ValueError(f"Unknown variant {variant!r} of maml_omniglot; valid: "
                     f"{sorted(sizes)}.")
  c.ways, c.shots = sizes[variant]
  # The budgets of the README's results table (H100, seeded small-set split).
  c.num_steps = {(5, 1): 8_000, (5, 5): 4_000, (20, 1): 4_000,
                 (20, 5): 2_500}[(c.ways, c.shots)]
  if c.ways == 20:
    c.inner_lr = 0.1
    c.inner_steps = 5
    c.test_inner_steps = 5
    c.meta_batch_size = 16
    c.queries = 5
  c.paper_result = (f"MAML paper, full Omniglot {c.ways}-way {c.shots}-shot: "
                    f"{PAPER[(c.ways, c.shots)]}")
  if variant == "smoke":
    c.filters = 8
    c.image_size = 14
    c.meta_batch_size = 2
    c.queries = 2
    c.num_steps = 4
    c.eval_episodes = 6
    c.val_every = 2
    c.val_episodes = 2
    c.checkpoint_every = 2
    c.log_every = 1
  return c
