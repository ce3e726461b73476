"""MAML on CIFAR-FS 5-way K-shot (the setting of Bertinetto et al. 2019).

Run:
  python -m experiments.train \
      --config=experiments/configs/maml_cifar_fs.py:5w1s \
      --workdir=/tmp/maml_cifar_fs

CIFAR-FS comes from tensorflow-datasets' cifar100 (see docs/datasets.md).
The recipe is MAML's miniImageNet one at 32x32: Conv4 with 32
filters and 2x2 max-pools, 5 inner SGD steps of 0.01 (10 at test), Adam 1e-3,
meta-batch 4 (the MAML row of Bertinetto et al.'s Table 1 uses 32 filters).

The same recipe runs on the other datasets by overriding two fields:
  --config.dataset=fc100                                    # 32x32 as well
  --config.dataset=mini_imagenet --config.image_size=84     # or tiered_imagenet
(`image_size=None` means the dataset's own size). `--config.augment=True` adds
random crops and flips of the training episodes, on the host.

Variants (`--config=...maml_cifar_fs.py:VARIANT`): "" (5w1s), 5w5s, smoke.
"""

import ml_collections

from experiments.configs import maml_omniglot

VARIANTS = {"": (5, 1), "5w1s": (5, 1), "5w5s": (5, 5), "smoke": (5, 1)}
PAPER = {(5, 1): "58.9 +- 1.9", (5, 5): "71.5 +- 1.0"}


def check_variant(variant: str, name: str) -> None:
  maml_omniglot.check_variant(variant, name, VARIANTS)


def cifar_fs_config(variant: str):
  """maml_omniglot's sizes on CIFAR-FS with the miniImageNet Conv4."""
  c = maml_omniglot.get_config("smoke" if variant == "smoke" else "5w1s")
  c.ways, c.shots = VARIANTS[variant]
  c.dataset = "cifar_fs"
  c.data_kwargs = ml_collections.ConfigDict()
  c.image_size = 32
  c.model_kwargs.filters = 4 if variant == "smoke" else 32
  c.model_kwargs.pooling = "max"
  return c


def get_config(variant: str = ""):
  check_variant(variant, "maml_cifar_fs")
  c = cifar_fs_config(variant)
  c.inner_lr = 0.01
  c.inner_steps = 5
  c.test_inner_steps = 10
  c.meta_batch_size = 4
  c.num_steps = 30_000
  c.paper_result = (
    f"Bertinetto et al. 2019, Table 1, MAML on CIFAR-FS "
    f"5-way {c.shots}-shot: {PAPER[(c.ways, c.shots)]}"
  )
  if variant == "smoke":
    c.inner_steps = 1
    c.test_inner_steps = 1
    c.meta_batch_size = 2
    c.num_steps = 3
    c.eval_episodes = 4
    c.val_every = 0
  return c
