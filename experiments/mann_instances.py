r"""MANN's accuracy by instance number (Santoro et al. 2016, Table 1).

  python -m experiments.mann_instances --workdir=/tmp/mann --episodes=1000 \
      --instances=10 --plot=/tmp/mann/by_instance.png

Each test episode is a sequence of the run's `ways` classes, new ones (the
test split), each shown `--instances` times in a random order. The model
labels every step online from a fresh memory: step t sees x_t and the label
of step t - 1, so the k-th instance of a class is labelled after k - 1 of
its examples were shown with their labels. Prints one JSON line with the
accuracy at the 1st, 2nd, 3rd, 5th and 10th instance (those up to
`--instances`), each the mean over episodes with its 95% interval, and
draws accuracy against instance number for every instance to `--plot`.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from experiments import cache_flags
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax.data import from_config as data_config
from metajax import runs
from metajax.learners.mann import online_logits_fn
from metajax.learners.online_protocol import by_instance as mann_by_instance

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "A finished MANN run.", required=True
)
_EPISODES = flags.DEFINE_integer("episodes", 1000, "Test sequences.")
_INSTANCES = flags.DEFINE_integer(
  "instances", 10, "Presentations of each class in a sequence."
)
_PLOT = flags.DEFINE_string("plot", "", "PNG to draw the curve to ('' none).")
_SEED = flags.DEFINE_integer(
  "seed", None, "Sequence seed (default: the run's test seed)."
)

REPORTED = (1, 2, 3, 5, 10)  # the paper's columns


def by_instance(run, episodes: int, instances: int, seed: int):
  """{k: per-episode accuracies [episodes] at instance k}, k = 1..instances."""
  config = run.config
  if config.learner != "mann":
    raise ValueError(
      f"{_WORKDIR.value!r} is a {config.learner} run; the "
      "by-instance protocol is MANN's."
    )
  online = online_logits_fn(
    from_config.build_model(config, None),
    ways=config.ways,
    **config.learner_kwargs.to_dict(),
  )
  return mann_by_instance(
    online,
    run.meta_params,
    data_config.load_splits(config)["test"],
    ways=config.ways,
    episodes=episodes,
    instances=instances,
    rng=np.random.default_rng(seed),
  )


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  cache_flags.apply()
  if _EPISODES.value < 1 or _INSTANCES.value < 1:
    raise app.UsageError("--episodes and --instances must be >= 1.")
  try:
    run = runs.load_run(_WORKDIR.value)
    seed = (
      from_config.test_seed(run.config) if _SEED.value is None else _SEED.value
    )
    values = by_instance(run, _EPISODES.value, _INSTANCES.value, seed)
  except ValueError as e:
    sys.exit(f"{type(e).__name__}: {e}")
  line = {
    "episodes": _EPISODES.value,
    "ways": run.config.ways,
    "instances": _INSTANCES.value,
  }
  for k in REPORTED:
    if k in values:
      line[f"instance_{k}"] = float(values[k].mean())
      line[f"instance_{k}_ci95"] = eval_lib.confidence_interval(values[k])
  print(json.dumps(line))
  if _PLOT.value:
    try:
      import matplotlib  # pylint: disable=g-import-not-at-top
    except ImportError:
      sys.exit(
        "--plot needs matplotlib (pip install matplotlib); the table "
        "above is complete without it."
      )
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    ks = sorted(values)
    means = [values[k].mean() for k in ks]
    cis = [eval_lib.confidence_interval(values[k]) for k in ks]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(ks, means, yerr=cis, marker="o", capsize=3)
    ax.axhline(
      1.0 / run.config.ways, color="gray", linestyle=":", label="chance"
    )
    ax.set_xlabel("instance of the class in the sequence")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(
      f"MANN, {run.config.ways} new classes, {_EPISODES.value} sequences"
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(_PLOT.value, dpi=120)


if __name__ == "__main__":
  app.run(main)
