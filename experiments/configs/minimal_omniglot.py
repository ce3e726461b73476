"""The Omniglot challenge's minimal setting (Lake et al. 2015, 2019).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/minimal_omniglot.py:small1 --workdir=/tmp/min1

Train on ONE small background set (`data_kwargs.background`: "small1" or
"small2"), all its characters but a 10 % validation carve-out (x4 rotations
as classes); test on 20-way within-alphabet one-shot classification of the
alphabets of the other small set that the first lacks (small1 -> Japanese
(katakana), Sanskrit, Tagalog; small2 -> Balinese, Early_Aramaic, Korean;
Tagalog's 17 characters are too few for 20-way episodes). Each test episode:
20 characters of one alphabet, one drawing each as support and another as
the query (20 trials), never rotated. Each query is classified on its own:
the embedding's batch norm normalizes queries with the support set's
statistics (`learner_kwargs.query_norm="support"`), never with the other
queries'.

The learner is Prototypical Networks (60-way training episodes, 5 queries per
class, as in the ProtoNets paper) on random affine warps of the training
images (`warp`: rotation, shear, scale and translation, after Koch et al.
2015). Validation: 20-way 1-shot episodes of the held-out characters (with
their rotations; too few characters per alphabet for within-alphabet
episodes).

Published errors in this setting (20-way within-alphabet one-shot, Lake et
al. 2019, Table 1): Prototypical Networks about 30 %, a simple ConvNet about
23 %, Bayesian Program Learning about 4 % (people: 4.5 % on the full task).
Our figures: docs/results.md ("Omniglot challenge, minimal setting").

Variants: "small1" (default: train small1), "small2", smoke (seconds).
"""

from experiments.configs import _base as base
from experiments.configs import maml_omniglot

VARIANTS = ("", "small1", "small2", "smoke")


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "minimal_omniglot", VARIANTS)
  c = maml_omniglot.omniglot_config("smoke" if variant == "smoke" else "")
  c.learner = "protonet"
  c.learner_kwargs.distance = "euclidean"
  c.learner_kwargs.query_norm = "support"
  c.data_kwargs = {
    "split": "minimal",
    "background": variant or "small1",
    "seed": 0,
    "num_val": base.placeholder(int),
    "rotations": True,
  }
  c.warp = True
  c.warp_kwargs = {
    "rotation": 10.0,
    "shear": 10.0,
    "scale": (0.8, 1.2),
    "translate": 0.1,
  }
  c.ways, c.shots, c.queries = 60, 1, 5
  c.test_ways, c.test_shots, c.test_queries = 20, 1, 1
  c.test_within_groups = True
  c.meta_batch_size = 1
  c.outer_lr = 1e-3
  c.outer_lr_schedule = "linear_decay"
  c.num_steps = 6_000
  c.val_every = 500
  c.val_episodes = 200
  c.select_on_validation = True
  c.eval_episodes = 400  # 8,000 trials
  c.paper_result = (
    "Lake et al. 2019, 20-way within-alphabet one-shot error: "
    "ProtoNets ~30 %, ConvNet ~23 %, BPL ~4 %"
  )
  if variant == "smoke":
    base.smoke(c)
    c.data_kwargs.background = "small1"
    c.meta_batch_size = 1
    c.ways, c.queries = 6, 2
    c.test_ways, c.test_queries = 5, 1
  return c
