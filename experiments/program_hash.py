r"""Hashes of each learner's meta-step program, to check that a refactor
changed no computation.

  PYTHONPATH=. python experiments/program_hash.py            # this tree
  PYTHONPATH=../old python experiments/program_hash.py       # another one

For each learner, builds the meta-step as `experiments.benchmark` builds its
rows (Conv4 with stride-2 convolutions as patches + matmul, 28x28, 5-way
1-shot, 15 queries per class, one inner step of SGD 0.4, Adam outer step;
4 tasks) and prints the hash of `make_meta_step(...).lower(...).as_text()`:
the StableHLO metajax hands to XLA, without source locations, so code that
only moved between files hashes the same. It imports only `metajax`, so the
same file can be run against an older checkout through PYTHONPATH.
"""

import hashlib
import sys

import jax
import numpy as np

from metajax import from_config
from metajax import step as step_lib
from metajax.types import Episode

LEARNERS = (
  "maml",
  "fomaml",
  "meta_sgd",
  "anil",
  "imaml",
  "protomaml",
  "meta_curvature",
  "reptile",
  "meta_learner_lstm",
  "protonet",
  "matching_net",
  "r2d2",
  "lrd2",
  "metaoptnet",
  "baseline",
  "baseline_pp",
  "mann",
  "snail",
)
INNER_LOOP = (
  "maml",
  "fomaml",
  "meta_sgd",
  "anil",
  "imaml",
  "protomaml",
  "meta_curvature",
  "reptile",
)


def program_text(learner_name, *, filters=64, size=28, tasks=4) -> str:
  """The StableHLO text (no locations) of `learner_name`'s meta-step."""
  ways, shots, queries = 5, 1, 15
  rng = np.random.default_rng(0)

  def images(n):
    return rng.integers(0, 256, (tasks, n, size, size, 1), dtype=np.uint8)

  def labels(k):
    return np.tile(np.repeat(np.arange(ways, dtype=np.int32), k), (tasks, 1))

  if learner_name.startswith("baseline"):  # mini-batches of as many images
    n = ways * (shots + queries)
    classes = rng.integers(0, 100, (tasks, n), dtype=np.int32)
    batch = Episode(images(0), labels(0), images(n), classes)
  else:
    batch = Episode(
      images(ways * shots),
      labels(shots),
      images(ways * queries),
      labels(queries),
    )
  config = from_config.default_config()
  config.update(
    dict(learner=learner_name, ways=ways, shots=shots, num_classes=100)
  )
  norm = learner_name not in ("mann", "snail")  # as the benchmark's rows
  config.model_kwargs.update(
    dict(filters=filters, pooling="stride", conv_impl="patches", norm=norm)
  )
  if learner_name in INNER_LOOP or learner_name == "meta_learner_lstm":
    config.inner_steps = 1
  if learner_name in INNER_LOOP:
    config.inner_lr = 0.4
  learner = from_config.build_learner(config)
  outer_opt = from_config.build_outer_opt(config)
  init_key, step_key = jax.random.split(jax.random.key(0))
  state = jax.jit(
    lambda k, b: step_lib.init_train_state(learner, outer_opt, k, b)
  )(init_key, batch)
  meta_step = step_lib.make_meta_step(learner, outer_opt, tasks_per_chunk=1)
  return meta_step.lower(state, batch, step_key).as_text(debug_info=False)


def main(names) -> None:
  for name in names or LEARNERS:
    text = program_text(name)
    print(name, hashlib.sha256(text.encode()).hexdigest()[:16], flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
