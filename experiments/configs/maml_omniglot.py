"""MAML on Omniglot N-way K-shot (Finn et al. 2017, Section 5.2).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/maml_omniglot.py --workdir=/tmp/maml_omniglot

Conv4 (64 filters, stride-2 convs, batch statistics), 28x28 images with
rotations as new classes, 1 inner SGD step of 0.4 (3 at test), Adam 1e-3,
meta-batch 32. Characters are split by `data_kwargs.split`: "seeded" works
on any set of zips (the small sets alone included); "vinyals" needs the full
release.

Variants (`--config=...maml_omniglot.py:VARIANT`): "" (5-way 1-shot),
5w5s, 20w1s, 20w5s, smoke (seconds).

Results on the 73 held-out characters (x4 rotations) of the small sets, 600
test episodes (docs/results.md): 5w1s 97.43 +- 0.27, 5w5s 98.73 +- 0.17,
20w1s 85.59 +- 0.39, 20w5s 93.52 +- 0.24 (%), trained on one H100.
"""

import ml_collections

from experiments.configs import _base as base

PAPER = {  # MAML paper, Table 1, full Omniglot
  (5, 1): "98.7 +- 0.4",
  (5, 5): "99.9 +- 0.1",
  (20, 1): "95.8 +- 0.3",
  (20, 5): "98.9 +- 0.2",
}
SIZES = {
  "": (5, 1),
  "5w1s": (5, 1),
  "5w5s": (5, 5),
  "20w1s": (20, 1),
  "20w5s": (20, 5),
  "smoke": (5, 1),
}


def check_variant(variant: str, name: str, valid=tuple(SIZES)) -> None:
  if variant not in valid:
    raise ValueError(
      f"Unknown variant {variant!r} of {name}; valid: {sorted(valid)}."
    )


def omniglot_config(variant: str) -> ml_collections.ConfigDict:
  """The data, network and episode sizes of the Omniglot configs."""
  c = base.get_config()
  c.model = "conv4"
  c.model_kwargs.filters = 64
  c.model_kwargs.pooling = "stride"
  c.model_kwargs.norm = True  # batch norm with the batch's statistics
  c.model_kwargs.conv_impl = "patches"
  # Conv4's matmul inputs: "float32" or "bfloat16" (float32 accumulation).
  c.model_kwargs.compute_dtype = "float32"
  c.dataset = "omniglot"
  c.data_kwargs.split = "seeded"
  c.data_kwargs.seed = 0  # of the split
  c.data_kwargs.num_train = base.placeholder(int)
  c.data_kwargs.num_val = base.placeholder(int)
  c.data_kwargs.rotations = True
  c.image_size = 28
  c.ways, c.shots = SIZES[variant]
  if variant == "smoke":
    c.model_kwargs.filters = 8
    c.image_size = 14
  return c


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  check_variant(variant, "maml_omniglot")
  c = omniglot_config(variant)
  c.learner = "maml"
  base.link(c, "inner_lr", 0.4)
  base.link(c, "inner_steps", 1)
  base.link(c, "test_inner_steps", 3, option="inner_steps", test=True)
  c.learner_kwargs.first_order = False
  c.learner_kwargs.remat = False
  # MAML++: per-layer per-step learned inner rates (lslr_steps rows, reused
  # by test-time steps beyond them), the multi-step loss, and first order for
  # the first first_order_steps meta-steps.
  c.learner_kwargs.lslr = False
  c.learner_kwargs.lslr_steps = c.get_ref("inner_steps")
  c.learner_kwargs.multi_step_loss = False
  c.learner_kwargs.first_order_steps = 0
  # The budgets of docs/results.md's table (H100, seeded small-set split).
  c.num_steps = {(5, 1): 8_000, (5, 5): 4_000, (20, 1): 4_000, (20, 5): 2_500}[
    (c.ways, c.shots)
  ]
  if c.ways == 20:
    c.inner_lr = 0.1
    c.inner_steps = 5
    c.test_inner_steps = 5
    c.meta_batch_size = 16
    c.queries = 5
  c.paper_result = (
    f"MAML paper, full Omniglot {c.ways}-way {c.shots}-shot: "
    f"{PAPER[(c.ways, c.shots)]}"
  )
  if variant == "smoke":
    base.smoke(c)
  return c
