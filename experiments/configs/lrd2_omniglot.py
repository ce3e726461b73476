"""LR-D2 on Omniglot (Bertinetto et al. 2019, Section 4).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/lrd2_omniglot.py --workdir=/tmp/lrd2

r2d2_omniglot's episodes, backbone (metajax's Conv4, not the paper's
network, as every learner of the comparison), optimizer and budget, with
LR-D2's head: one binary L2-regularized logistic regression per class
against the rest, each fit by 5 Newton steps from zero in the n x n space
of the support set (the paper ran 1 and 5), and the scores unscaled at
first (alpha 1, beta 0, as in the authors' code; learned here). The paper
reports LR-D2 on miniImageNet and CIFAR-FS only, not on Omniglot.

Variants: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke (seconds).
"""

import ml_collections

from experiments.configs import maml_omniglot
from experiments.configs import r2d2_omniglot


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "lrd2_omniglot")
  c = r2d2_omniglot.get_config(variant)
  c.learner = "lrd2"
  c.learner_kwargs = ml_collections.ConfigDict(
    {
      "newton_steps": 5,
      "lambda_init": 1.0,
      "alpha_init": 1.0,
      "beta_init": 0.0,
      "fit_bias": True,
    }
  )
  c.paper_result = (
    "LR-D2 paper: no Omniglot figures (miniImageNet and CIFAR-FS only)"
  )
  return c
