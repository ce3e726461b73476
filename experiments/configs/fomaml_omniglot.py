"""First-order MAML (FOMAML) on Omniglot N-way K-shot.

maml_omniglot's settings with learner="fomaml".

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/fomaml_omniglot.py:5w1s --workdir=/tmp/fomaml_omniglot

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import maml_omniglot


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "fomaml"
  del c.learner_kwargs["first_order"]  # fomaml is first order
  del c.learner_kwargs["first_order_steps"]
  return c
