"""First-order MAML (FOMAML) on Omniglot N-way K-shot.

maml_omniglot's settings with learner="fomaml".

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/fomaml_omniglot.py:5w1s --workdir=/tmp/fomaml_omniglot

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import maml_omniglot

# The MAML paper's Table 1, first-order approximation (%).
PAPER = {
  (5, 1): "98.3 +- 0.5",
  (5, 5): "99.2 +- 0.2",
  (20, 1): "89.4 +- 0.5",
  (20, 5): "97.9 +- 0.1",
}


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "fomaml"
  del c.learner_kwargs["first_order"]  # fomaml is first order
  del c.learner_kwargs["first_order_steps"]
  c.paper_result = (
    f"MAML paper, first order, full Omniglot {c.ways}-way "
    f"{c.shots}-shot: {PAPER[(c.ways, c.shots)]}"
  )
  return c
