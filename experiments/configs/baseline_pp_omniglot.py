"""Baseline++ (Chen et al. 2019) on Omniglot: cosine classifier, learned scale.

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/baseline_pp_omniglot.py --workdir=/tmp/baseline_pp

baseline_omniglot's settings with the cosine head (scale initialized to 10,
learned in pre-training, kept when fitting the test-time head, which starts
at the support set's class means: `head_init`).
Variants as baseline_omniglot.
"""

from experiments.configs import baseline_omniglot


def get_config(variant: str = ""):
  c = baseline_omniglot.get_config(variant)
  c.learner = "baseline_pp"
  c.learner_kwargs.head_init = "prototypes"  # the class means (imprinting)
  return c
