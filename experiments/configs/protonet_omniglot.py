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

from experiments.configs import maml_omniglot

PAPER = {(5, 1): "98.8", (5, 5): "99.7", (20, 1): "96.0", (20, 5): "98.9"}
GRADIENT_FIELDS = ("first_order", "first_order_steps", "remat", "lslr",
                   "multi_step_loss", "inner_steps", "test_inner_steps",
                   "inner_lr")


def embedding_config(variant: str, learner: str):
  """maml_omniglot's data and net, without the inner-loop fields."""
  c = maml_omniglot.get_config(variant)
  for name in GRADIENT_FIELDS:
    del c[name]
  c.learner = learner
  # A finished run whose meta-parameters' "embed" initializes this run's
  # embedding (the same network), e.g. a ProtoNet run for SNAIL; "": none.
  c.embedding_init = ""
  # True: the embedding's meta-parameters stay as initialized (by
  # embedding_init) and only the rest is meta-trained.
  c.freeze_embedding = False
  return c


def get_config(variant: str = ""):
  c = embedding_config(variant, "protonet")
  test_ways, shots = c.ways, c.shots
  c.distance = "euclidean"
  c.scale = 10.0  # only for distance="cosine"
  c.ways = 60
  c.test_ways = test_ways
  c.queries = 5
  c.test_queries = 15 if test_ways == 5 else 5
  c.meta_batch_size = 1
  c.outer_lr = 1e-3
  c.outer_lr_schedule = "linear_decay"
  # The budgets of the README's results table (2 CPU cores).
  c.num_steps = 3_000 if shots == 1 else 2_000
  c.paper_result = (f"ProtoNets paper, full Omniglot {test_ways}-way {shots}-shot: "
                    f"{PAPER[(test_ways, shots)]}")
  if variant == "smoke":
    c.ways, c.queries, c.test_queries = 6, 2, 2
    c.num_steps = 4
  return c
