"""Reptile on Omniglot N-way K-shot (Nichol et al. 2018, Appendix A).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/reptile_omniglot.py --workdir=/tmp/reptile

The paper's Omniglot settings where they fit this design: inner Adam
(beta1 = 0) with step 1e-3, 5 inner steps in meta-training and 50 at test
(full-batch on the support set, where the paper used mini-batches of 10),
outer SGD with step 1 decayed linearly to 0, meta-batch 5. Variants as
maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import maml_omniglot


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "reptile"
  if variant != "smoke":
    c.inner_lr = 1e-3
    c.inner_steps = 5
    c.test_inner_steps = 50
    c.meta_batch_size = 5
    c.num_steps = 20_000
  c.outer_opt = "sgd"
  c.outer_lr = 1.0
  c.outer_lr_schedule = "linear_decay"
  return c
