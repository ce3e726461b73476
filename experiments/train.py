r"""Meta-trains and evaluates a learner from a config.

  python -m experiments.train                      # MAML on sinusoids (default)
  python -m experiments.train --config=experiments/configs/maml_omniglot.py:5w5s \
      --workdir=/tmp/run --config.num_steps=2000

Writes checkpoints, metrics.jsonl, TensorBoard events, config.json and
results.json to --workdir (resuming a run found there), and prints the result
beside the paper's number.
"""

import json
import os
import tempfile

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

from metajax import runs

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs",
                               "maml_sinusoid.py")
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Config file, with an optional ':variant'.",
    lock_config=False)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where checkpoints, metrics and results go (a fresh "
    "temporary folder if unset).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="metajax_")
  results = runs.train_and_evaluate(config, workdir, progress=_PROGRESS.value)
  line = {k: results[k] for k in ("metric", "mean", "ci95", "episodes")}
  line["workdir"] = workdir
  print(json.dumps(line))
  print(f"{results['metric']}: {results['mean']:.4f} +- {results['ci95']:.4f} "
        f"over {results['episodes']} test episodes | "
        f"{config.get('paper_result', '')}")


if __name__ == "__main__":
  app.run(main)
