"""Memory-Augmented Neural Networks on Omniglot (Santoro et al. 2016).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/mann_omniglot.py:5w1s --workdir=/tmp/mann

An LSTM controller of 200 units with a 128 x 40 memory, 4 read heads and
least-recently-used writes (usage decay 0.95), as in the paper, reading the
support set as a sequence of (x_t, y_{t-1}) steps; each query is a further
step from the post-support state, scored as N-way K-shot query accuracy.
Each head writes an add vector of its own and scales its cosines by a
learned key strength (`add_vectors`, `key_strength`; both False is the
paper's equations as written, which learned much more slowly in our runs:
see metajax.learners.mann). Adam 1e-3. `experiments.mann_instances` gives
the paper's by-instance accuracies of a finished run.

The input: "" / 5w1s / 5w5s read the images through the Conv4 of
maml_omniglot without batch norm (`norm=False`, every image embedded alone,
see snail_omniglot). The results row (docs/results.md) starts it from a ProtoNet run and
keeps it there (`--config.embedding_init=P --config.freeze_embedding=True`)
and trains on the paper's loss (`--config.online_loss=True
--config.queries=9 --config.meta_batch_size=16`: the loss of every step of
sequences of 5 classes x 10 drawings). "pixels" is the paper's own setup,
trained end to end: flattened 20x20 pixels (`model="mlp"`, `hidden=()`: no
embedding network) and the same online loss and sequences.

Variants: "" (5w1s), 5w5s, pixels, smoke (seconds).
"""

import ml_collections

from experiments.configs import _base as base
from experiments.configs import maml_omniglot

VARIANTS = ("", "5w1s", "5w5s", "pixels", "smoke")


def get_config(variant: str = ""):
  maml_omniglot.check_variant(variant, "mann_omniglot", VARIANTS)
  c = maml_omniglot.omniglot_config("5w1s" if variant == "pixels" else variant)
  c.learner = "mann"
  c.model_kwargs.norm = False
  c.learner_kwargs.memory_slots = 128
  c.learner_kwargs.memory_size = 40
  c.learner_kwargs.controller_size = 200
  c.learner_kwargs.read_heads = 4
  c.learner_kwargs.gamma = 0.95
  # False: write the keys / no key strength (see metajax.learners.mann).
  c.learner_kwargs.add_vectors = True
  c.learner_kwargs.key_strength = True
  # True: the paper's loss at every step of the episode.
  c.learner_kwargs.online_loss = False
  c.queries = 1
  c.test_queries = 15
  c.meta_batch_size = 32
  c.outer_lr = 1e-3
  c.num_steps = 10_000
  c.paper_result = ("MANN paper, Table 1: 5-way online accuracy by instance "
                    "(a different protocol from this N-way K-shot score)")
  if variant == "pixels":
    # The paper's setup, trained end to end: flattened 20x20 pixels (no
    # embedding network), the loss of every step of sequences of 5 classes x
    # 10 drawings, 16 sequences a step.
    c.model = "mlp"
    c.model_kwargs = ml_collections.ConfigDict({"hidden": ()})
    c.image_size = 20
    c.learner_kwargs.online_loss = True
    c.queries = 9
    c.meta_batch_size = 16
  if variant == "smoke":
    base.smoke(c)
    c.learner_kwargs.memory_slots = 8
    c.learner_kwargs.memory_size = 4
    c.learner_kwargs.controller_size = 8
    c.learner_kwargs.read_heads = 2
    c.queries = 1
    c.test_queries = 2
    c.val_every = 0  # one compile fewer
  return c
