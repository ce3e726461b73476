"""Meta-SGD (learned per-coordinate inner steps) on Omniglot N-way K-shot.

maml_omniglot's settings with learner="meta_sgd".

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/meta_sgd_omniglot.py:5w1s --workdir=/tmp/meta_sgd_omniglot

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import maml_omniglot

# The Meta-SGD paper's Table 1 (%).
PAPER = {
  (5, 1): "99.53 +- 0.26",
  (5, 5): "99.93 +- 0.09",
  (20, 1): "95.93 +- 0.38",
  (20, 5): "98.97 +- 0.19",
}


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "meta_sgd"
  c.paper_result = (
    f"Meta-SGD paper, full Omniglot {c.ways}-way {c.shots}-"
    f"shot: {PAPER[(c.ways, c.shots)]}"
  )
  return c
