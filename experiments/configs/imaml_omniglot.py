"""iMAML on Omniglot N-way K-shot (Rajeswaran et al. 2019, Section 5.2).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/imaml_omniglot.py:5w1s --workdir=/tmp/imaml

The paper's "iMAML, GD" recipe: the inner problem (support loss plus
lam / 2 ||phi - theta||^2, lam = 2) solved by 16 gradient-descent steps of
0.1 for 5-way, 25 for 20-way (Table 2's caption; the step of the authors'
code), the meta-gradient by 5 conjugate-gradient steps, Adam 1e-3 outer
steps over meta-batches of 32 tasks (the authors' command). The same lam and
steps at test time (the authors' evaluation script drops the proximal term
there, lam = 0, which this learner does not take). The network is
maml_omniglot's Conv4 (stride-2 convs, 64 filters, batch statistics), the
paper's too. The budget is maml_omniglot's (the paper's code trains 20k
meta-steps or more).

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke (seconds).
"""

from experiments.configs import _base as base
from experiments.configs import maml_omniglot

# The iMAML paper's Table 2, "iMAML, GD" (%).
PAPER = {
  (5, 1): "99.16 +- 0.35",
  (5, 5): "99.67 +- 0.12",
  (20, 1): "94.46 +- 0.42",
  (20, 5): "98.69 +- 0.1",
}


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "imaml_omniglot")
  c = maml_omniglot.omniglot_config(variant)
  c.learner = "imaml"
  steps = 25 if c.ways == 20 else 16
  base.link(c, "inner_lr", 0.1)
  base.link(c, "inner_steps", steps)
  base.link(c, "test_inner_steps", steps, option="inner_steps", test=True)
  c.learner_kwargs.lam = 2.0
  c.learner_kwargs.cg_steps = 5
  # 0: the paper's system (I + H / lam) v = g; > 0 damps its identity.
  c.learner_kwargs.cg_damping = 0.0
  c.meta_batch_size = 32
  c.outer_lr = 1e-3
  c.num_steps = {(5, 1): 8_000, (5, 5): 4_000, (20, 1): 4_000, (20, 5): 2_500}[
    (c.ways, c.shots)
  ]
  if c.ways == 20:
    c.queries = 5  # maml_omniglot's 20-way queries
  c.paper_result = (
    f"iMAML paper (GD), full Omniglot {c.ways}-way {c.shots}-shot: "
    f"{PAPER[(c.ways, c.shots)]}"
  )
  if variant == "smoke":
    base.smoke(c)
    c.inner_steps = c.test_inner_steps = 3
    c.learner_kwargs.cg_steps = 2
  return c
