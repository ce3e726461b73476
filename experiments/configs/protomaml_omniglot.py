"""ProtoMAML (Triantafillou et al. 2020, Section 3) on Omniglot N-way K-shot.

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/protomaml_omniglot.py:5w1s --workdir=/tmp/protomaml

maml_omniglot's data, network (the Conv4 without its head: the head is set
for each task from the support set's prototypes), episode sizes, outer Adam
and budgets, with the paper's first-order inner loop (fo-Proto-MAML; the
outer gradient still flows through the prototypes). The inner steps are
MAML's Omniglot ones (SGD 0.4, 1 step, 3 at test; 20-way: 0.1, 5 and 5),
not the paper's 5 steps of 0.01, which it set for 84x84 Meta-Dataset images;
they were not tuned for ProtoMAML here.

The paper evaluates on Meta-Dataset's episodes (Omniglot among them, with
varying ways and shots), so it has no figure for this protocol; compare with
the MAML and ProtoNets rows.

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import _base as base
from experiments.configs import maml_omniglot


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "protomaml_omniglot")
  c = maml_omniglot.omniglot_config(variant)
  c.learner = "protomaml"
  base.link(c, "inner_lr", 0.4)
  base.link(c, "inner_steps", 1)
  base.link(c, "test_inner_steps", 3, option="inner_steps", test=True)
  c.learner_kwargs.first_order = True  # the paper's fo-Proto-MAML
  c.learner_kwargs.prototype_gradient = True
  c.learner_kwargs.remat = False
  # maml_omniglot's budgets (its results table, H100).
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
    "Meta-Dataset paper (fo-Proto-MAML): no Omniglot N-way K-shot figure "
    "(its Omniglot episodes vary in ways and shots); compare with the "
    "MAML and ProtoNets rows"
  )
  if variant == "smoke":
    base.smoke(c)
  return c
