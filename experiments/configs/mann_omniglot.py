"""Memory-Augmented Neural Networks on Omniglot (Santoro et al. 2016).

Run:
  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.train \
      --config=experiments/configs/mann_omniglot.py:5w1s --workdir=/tmp/mann

An LSTM controller of 200 units with a 128 x 40 memory, 4 read heads and
least-recently-used writes (usage decay 0.95), as in the paper, reading the
support set as a sequence of (x_t, y_{t-1}) steps; each query is a further
step from the post-support state, scored as N-way K-shot query accuracy.
The paper fed flattened 20x20 pixels; here the input is the Conv4 of
maml_omniglot without batch norm (`norm=False`, every image embedded alone,
see snail_omniglot). Adam 1e-3. `metajax.learners.mann.online_logits_fn`
and `accuracy_by_instance` give the paper's by-instance accuracies.

A first run (5w1s, `--config.num_steps=2500 --config.val_every=0`, 19 min
on 2 shared CPU cores) stayed at chance: test accuracy 19.77 +- 0.68 % over
600 episodes, the training loss at ln 5 throughout. On a synthetic 5-way
1-shot task (fresh random 32-d class vectors each episode, queries = the
vector + 0.1 noise, a dense embedding, 16 tasks a step, Adam 1e-3) the same
model stays at chance for about 1,500 steps, then learns: 38 % training
accuracy at step 1,600, 85 % at 2,500. So the memory works, after a long
plateau; on Omniglot the embedding must be learned as well, and 2,500 steps
were not enough. Not yet a working recipe.

From the ProtoNet embedding that makes SNAIL learn (`--config.embedding_init=P`,
see snail_omniglot): 4000 steps on an H100 tested at 19.54 +- 0.60 %, the
gradient norm 0.0016 at the end. With `online_loss=True` (the paper's loss at
every step; `--config.queries=9 --config.meta_batch_size=16`: sequences of 5
classes x 10 instances) the test score stayed at chance (20.03 %), and by
instance (experiments.mann_instances, 2,500 steps) MANN named unseen labels
at the 1st instance (45 %) but did not recall (31 % at the 2nd, 25 % at the
10th). README: "MANN does not learn Omniglot in our runs".

Variants: "" (5w1s), 5w5s, smoke (seconds).
"""

from experiments.configs import protonet_omniglot

VARIANTS = ("", "5w1s", "5w5s", "smoke")


def get_config(variant: str = ""):
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r} of mann_omniglot; "
                     f"valid: {sorted(VARIANTS)}.")
  c = protonet_omniglot.embedding_config(variant, "mann")
  c.norm = False
  c.memory_slots = 128
  c.memory_size = 40
  c.controller_size = 200
  c.read_heads = 4
  c.gamma = 0.95
  c.online_loss = False  # True: the paper's loss at every step of the episode
  c.queries = 1
  c.test_queries = 15
  c.meta_batch_size = 32
  c.outer_lr = 1e-3
  c.num_steps = 10_000
  c.paper_result = ("MANN paper, Table 1: 5-way online accuracy by instance "
                    "(a different protocol from this N-way K-shot score)")
  if variant == "smoke":
    c.memory_slots, c.memory_size, c.controller_size, c.read_heads = 8, 4, 8, 2
    c.meta_batch_size = 2
    c.test_queries = 2
    c.num_steps = 4
    c.val_every = 0  # one compile fewer
  return c
