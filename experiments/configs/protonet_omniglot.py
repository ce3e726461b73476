"""Prototypical Networks on Omniglot (Snell et al. 2017, Section 3.1).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/protonet_omniglot.py:5w1s --workdir=/tmp/protonet

The paper's Omniglot recipe where it fits this design: 60-way training
episodes with 5 queries per class and the test shot, squared Euclidean
distance, Adam 1e-3 (here decayed linearly to 0 over the budget instead of
halved every 2000 episodes). The embedding is the Conv4 of maml_omniglot
(stride-2 convs, 64 features, batch statistics), not the paper's max-pool
Conv4. The 5-way and 20-way variants of one shot train the same model and
differ only at test time, so one run can be re-evaluated at the other way
count with `experiments.evaluate --test_ways=20 --test_queries=5`.

Variants: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke (seconds).
"""

from experiments.configs import _base as base
from experiments.configs import maml_omniglot

PAPER = {(5, 1): "98.8", (5, 5): "99.7", (20, 1): "96.0", (20, 5): "98.9"}


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "protonet_omniglot")
  c = maml_omniglot.omniglot_config(variant)
  c.learner = "protonet"
  test_ways, shots = c.ways, c.shots
  c.learner_kwargs.distance = "euclidean"
  c.learner_kwargs.scale = 10.0  # only for distance="cosine"
  c.ways = 60
  c.test_ways = test_ways
  c.queries = 5
  c.test_queries = 15 if test_ways == 5 else 5
  c.meta_batch_size = 1
  c.outer_lr = 1e-3
  c.outer_lr_schedule = "linear_decay"
  # The budgets of docs/results.md's table (2 CPU cores).
  c.num_steps = 3_000 if shots == 1 else 2_000
  c.paper_result = (
    f"ProtoNets paper, full Omniglot {test_ways}-way {shots}-shot: "
    f"{PAPER[(test_ways, shots)]}"
  )
  if variant == "smoke":
    base.smoke(c)
    c.meta_batch_size = 1
    c.ways, c.queries, c.test_queries = 6, 2, 2
  return c
