"""Meta-SGD (learned per-coordinate inner steps) on Omniglot N-way K-shot.

maml_omniglot's settings with learner="meta_sgd".

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/meta_sgd_omniglot.py:5w1s --workdir=/tmp/meta_sgd_omniglot

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import maml_omniglot


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "meta_sgd"
  return c
