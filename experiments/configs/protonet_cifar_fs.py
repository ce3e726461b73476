"""Prototypical Networks on CIFAR-FS 5-way K-shot.

Run:
  python -m experiments.train \
      --config=experiments/configs/protonet_cifar_fs.py:5w1s \
      --workdir=/tmp/protonet_cifar_fs

Conv4 embedding (64 filters, 2x2 max-pools, 32x32 -> 256 features), trained
on 20-way episodes with 5 queries a class and the test shot, squared
Euclidean distance, Adam 1e-3 decayed linearly to 0; tested 5-way with 15
queries. As maml_cifar_fs, `--config.dataset=fc100`, or `mini_imagenet` /
`tiered_imagenet` with `--config.image_size=84`, runs the same recipe on
another dataset, and `--config.augment=True` adds random crops and flips.

Variants: "" (5w1s), 5w5s, smoke (seconds).
"""

import ml_collections

from experiments.configs import maml_cifar_fs

PAPER = {(5, 1): "55.5 +- 0.7", (5, 5): "72.0 +- 0.6"}


def get_config(variant: str = ""):
  maml_cifar_fs.check_variant(variant, "protonet_cifar_fs")
  c = maml_cifar_fs.cifar_fs_config(variant)
  c.learner = "protonet"
  c.learner_kwargs = ml_collections.ConfigDict(
    {"distance": "euclidean", "scale": 10.0}
  )  # scale: only for "cosine"
  c.test_learner_kwargs = ml_collections.ConfigDict()
  c.inner_lr = c.inner_steps = c.test_inner_steps = None  # no inner loop
  c.model_kwargs.filters = 4 if variant == "smoke" else 64
  c.test_ways = c.ways
  c.ways = 20
  c.queries = 5
  c.test_queries = 15
  c.meta_batch_size = 1
  c.outer_lr = 1e-3
  c.outer_lr_schedule = "linear_decay"
  c.num_steps = 20_000
  c.paper_result = (
    f"Bertinetto et al. 2019, Table 1, ProtoNets on CIFAR-FS "
    f"5-way {c.shots}-shot: {PAPER[(c.test_ways, c.shots)]}"
  )
  if variant == "smoke":
    c.ways, c.queries, c.test_queries = 6, 2, 2
    c.num_steps = 3
    c.eval_episodes = 4
    c.val_every = 0
  return c
