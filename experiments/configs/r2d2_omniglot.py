"""R2-D2 on Omniglot (Bertinetto et al. 2019, Section 4).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/r2d2_omniglot.py --workdir=/tmp/r2d2

A ridge regression head solved in closed form on each support set (by the
Woodbury identity), with lambda, the logits' scale alpha and bias beta
meta-learned. The authors' Omniglot recipe where it fits this design:
60-way training episodes of 600 images (shots + queries = 10 per class)
whatever the test's ways, alpha initialized to 10, Adam 5e-3 (here decayed
linearly to 0 over the budget instead of halved every 2,000 episodes), and
a constant 1 appended to the features (a bias row in W). Their training
episodes draw the shots at random in 1..10; here they have the test's shots.

The backbone differs on purpose: the paper's Omniglot network is a 4-block
max-pool CNN whose features concatenate the last two blocks' outputs, with
leaky ReLUs; here it is the Conv4 of maml_omniglot (64 filters, stride-2
convolutions, batch statistics, 64 features), the backbone of every other
learner of the comparison, so that the learners differ only in how they
adapt. lambda_init (1.0) is not tuned: lambda here weighs the sum of the
squared errors over the support set (the paper's formula), where the
authors' code divides features and targets by sqrt(n).

Variants: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke (seconds).
"""

from experiments.configs import _base as base
from experiments.configs import maml_omniglot

# Table 1 of the paper, full Omniglot: 5w1s, 5w5s, 20w1s, 20w5s.
PAPER = {
  (5, 1): "98.6 +- 0.1",
  (5, 5): "99.7 +- 0.0",
  (20, 1): "94.7 +- 0.3",
  (20, 5): "98.9 +- 0.0",
}


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "r2d2_omniglot")
  c = maml_omniglot.omniglot_config(variant)
  c.learner = "r2d2"
  test_ways, shots = c.ways, c.shots
  c.learner_kwargs.lambda_init = 1.0
  c.learner_kwargs.alpha_init = 10.0  # the authors' Omniglot scale
  c.learner_kwargs.beta_init = 0.0
  c.learner_kwargs.fit_bias = True
  c.ways = 60
  c.test_ways = test_ways
  c.queries = 10 - shots  # 600-image training episodes
  c.test_queries = 15 if test_ways == 5 else 5
  c.meta_batch_size = 1
  c.outer_lr = 5e-3
  c.outer_lr_schedule = "linear_decay"
  c.num_steps = 3_000 if shots == 1 else 2_000
  c.paper_result = (
    f"R2-D2 paper, full Omniglot {test_ways}-way {shots}-shot: "
    f"{PAPER[(test_ways, shots)]}"
  )
  if variant == "smoke":
    base.smoke(c)
    c.meta_batch_size = 1
    c.ways, c.queries, c.test_queries = 6, 2, 2
  return c
