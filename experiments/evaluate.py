r"""Evaluates a finished run again, with other test-time settings.

  python -m experiments.evaluate --workdir=/tmp/maml_sinusoid \
      --test_shots=5 --test_inner_steps=1,5,10 --episodes=600
  python -m experiments.evaluate --workdir=/tmp/protonet \
      --test_ways=20 --test_queries=5
  python -m experiments.evaluate --workdir=/tmp/reptile --split=val \
      --test_inner_steps=5,50   # choose on validation classes, then test

Prints one JSON line per setting: metric, mean, ci95, episodes.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging

from experiments import cache_flags
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "The run to evaluate.", required=True
)
_WAYS = flags.DEFINE_integer(
  "test_ways", None, "Classes per episode (default: the run's)."
)
_SHOTS = flags.DEFINE_integer(
  "test_shots", None, "Support size (default: the run's)."
)
_QUERIES = flags.DEFINE_integer(
  "test_queries", None, "Queries per class (default: the run's)."
)
_STEPS = flags.DEFINE_list(
  "test_inner_steps", [], "Inner steps to try (default: the run's)."
)
_EPISODES = flags.DEFINE_integer("episodes", 600, "Test episodes.")
_SEED = flags.DEFINE_integer(
  "seed",
  None,
  "Episode seed (default: the run's "
  "test seed, or its validation seed with "
  "--split=val).",
)
_SPLIT = flags.DEFINE_enum(
  "split",
  "test",
  ["test", "val"],
  "Classes to evaluate on: the held-out test classes, "
  "or the validation classes (to choose test-time "
  "settings such as --test_inner_steps without "
  "looking at the test classes).",
)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cache_flags.apply()
  try:
    run = runs.load_run(_WORKDIR.value)
  except ValueError as e:  # no run, or a checkpoint.CheckpointError
    sys.exit(f"{type(e).__name__}: {e}")
  config = run.config
  for name, flag in (
    ("test_ways", _WAYS),
    ("test_shots", _SHOTS),
    ("test_queries", _QUERIES),
  ):
    if flag.value is not None:
      config[name] = flag.value
  inner_loop = "inner_steps" in from_config.learner_options(config)
  if _STEPS.value and not inner_loop:
    raise app.UsageError(
      f"--test_inner_steps: the {config.learner} run has no inner loop."
    )
  try:
    source = from_config.build_sources(config)[_SPLIT.value]
  except ValueError as e:  # e.g. --test_ways beyond the split's classes
    sys.exit(f"{type(e).__name__}: {e}")
  if _SEED.value is not None:
    seed = _SEED.value
  elif _SPLIT.value == "val":
    seed = from_config.val_seed(config)  # the episodes validated in training
  else:
    seed = from_config.test_seed(config)
  for steps in [int(s) for s in _STEPS.value] or [None]:
    if steps is not None:
      config.test_inner_steps = steps
    learner = from_config.build_learner(config, test=True)
    result = eval_lib.evaluate(
      learner, run.meta_params, source, episodes=_EPISODES.value, seed=seed
    )
    line = {
      n: from_config.test_value(config, n) for n in ("ways", "shots", "queries")
    }
    if inner_loop:
      line["inner_steps"] = from_config.learner_options(config, test=True)[
        "inner_steps"
      ]
    print(
      json.dumps(
        {
          **{"test_" + n: v for n, v in line.items()},
          "metric": result.metric,
          "mean": result.mean,
          "ci95": result.ci95,
          "episodes": result.episodes,
          "split": _SPLIT.value,
        }
      )
    )


if __name__ == "__main__":
  app.run(main)
