"""ANIL (inner loop on the head only) on Omniglot N-way K-shot.

maml_omniglot's settings with learner="anil".

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/anil_omniglot.py:5w1s --workdir=/tmp/anil_omniglot

Variants as maml_omniglot: "" (5w1s), 5w5s, 20w1s, 20w5s, smoke.
"""

from experiments.configs import maml_omniglot


def get_config(variant: str = ""):
  c = maml_omniglot.get_config(variant)
  c.learner = "anil"
  c.paper_result = ("ANIL paper: ANIL matches MAML's performance (its "
                    "abstract); compare with the MAML row")
  return c
