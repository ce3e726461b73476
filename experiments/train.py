r"""Meta-trains and evaluates a learner from a config.

  python -m experiments.train                      # MAML on sinusoids (default)
  python -m experiments.train --config=experiments/configs/maml_omniglot.py:5w5s \
      --workdir=/tmp/run --config.num_steps=2000

Writes checkpoints, metrics.jsonl, TensorBoard events, config.json and
results.json to --workdir (resuming a run found there), and prints the result
beside the paper's number.
"""

import difflib
import importlib.util
import json
import os
import sys
import tempfile

from absl import app
from absl import logging
from absl import flags
import jax
from ml_collections import config_flags

from experiments import cache_flags
from experiments import progress
from metajax import checkpoint
from metajax import from_config
from metajax import memory
from metajax import parallel
from metajax import runs
from metajax import train

_DEFAULT_CONFIG = os.path.join(
  os.path.dirname(__file__), "configs", "maml_sinusoid.py"
)
_CONFIG = config_flags.DEFINE_config_file(
  "config",
  _DEFAULT_CONFIG,
  "Config file, with an optional ':variant'.",
  lock_config=False,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Where checkpoints, metrics and results go (a fresh "
  "temporary folder if unset).",
)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Run as one of several processes (hosts): call "
  "jax.distributed.initialize, from the environment where JAX can read it "
  "(e.g. SLURM) or from --coordinator_address, --num_processes and "
  "--process_id. Every process runs this same command.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 (implies --distributed)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Processes taking part (implies --distributed)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process's index (implies --distributed)."
)


def _config_files():
  folder = os.path.dirname(_DEFAULT_CONFIG)
  return sorted(
    os.path.join("experiments", "configs", f)
    for f in os.listdir(folder)
    if f.endswith(".py") and not f.startswith("_")
  )


def _fail(message):
  sys.stderr.write(f"FATAL Flags parsing error: {message}\n")
  sys.exit(1)


def _config_arg(argv):
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg[len("--config=") :]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _load_config(spec):
  """The config of the file `spec` ("path[:variant]").

  Raises:
    ValueError: the config file's own error, e.g. an unknown variant.
  """
  path, _, variant = spec.partition(":")
  loader = importlib.util.spec_from_file_location("_metajax_config", path)
  module = importlib.util.module_from_spec(loader)
  loader.loader.exec_module(module)
  return module.get_config(variant)


def _unknown_field(spec, argv):
  """(where, name, fields) of the first --config.A.B=... whose path the
  config file `spec` lacks: `where` is "the config" or "config.A", `fields`
  what it has; None when the config cannot be loaded or has every path."""
  try:
    config = _load_config(spec)
  except Exception:  # pylint: disable=broad-except
    return None
  paths = [
    a[len("--config.") :].split("=")[0].split(".")
    for a in argv
    if a.startswith("--config.")
  ]
  for path in paths:
    node, where = config, "the config"
    for depth, name in enumerate(path):
      if not hasattr(node, "keys"):
        break
      if name not in node:
        return where, name, sorted(node.keys())
      node, where = node[name], "config." + ".".join(path[: depth + 1])
  return None


def _parse_flags(argv):
  """absl's flag parsing, with errors that list what is valid: an unknown
  --config file lists the config files, an unknown --config.FIELD (or
  --config.A.FIELD) the fields beside it."""
  spec = _config_arg(argv)
  if spec is not None and not os.path.isfile(spec.partition(":")[0]):
    _fail(
      f"--config={spec}: no such file. Valid configs (add ':variant'): "
      f"{', '.join(_config_files())}."
    )
  if spec is not None:
    try:
      _load_config(spec)
    except ValueError as e:  # e.g. an unknown variant: one line, no traceback
      _fail(f"--config={spec}: {e}")
  try:
    return app.parse_flags_with_usage(argv)
  except (KeyError, AttributeError):
    unknown = _unknown_field(spec or _DEFAULT_CONFIG, argv)
    if unknown is None:
      raise
    where, name, fields = unknown
    close = difflib.get_close_matches(name, fields, n=1)
    _fail(
      f"{where} has no field {name!r}"
      + (f" (did you mean {close[0]!r}?)" if close else "")
      + f"; its fields: {', '.join(fields)}."
    )


def main(argv):
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  cache_flags.apply()
  given = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if _DISTRIBUTED.value or any(v is not None for v in given):
    try:  # before anything touches a device
      parallel.initialize_distributed(*given)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
  try:
    config = from_config.validate(config)
  except from_config.ConfigError as e:
    sys.exit(f"Invalid config: {e}")
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="metajax_")
  bar = progress.ProgressBar(config.num_steps) if _PROGRESS.value else None
  try:
    results = runs.train_and_evaluate(config, workdir, callback=bar)
  except from_config.ConfigError as e:  # found with the data, e.g. ways
    sys.exit(f"Invalid config: {e}")
  except (
    checkpoint.CheckpointError,
    train.NonFiniteError,
    memory.StepMemoryError,
  ) as e:
    sys.exit(f"{type(e).__name__}: {e}")
  finally:
    if bar is not None:
      bar.close()
  if jax.process_index() != 0:  # process 0 prints (and wrote) the results
    return
  line = {k: results[k] for k in ("metric", "mean", "ci95", "episodes")}
  line["workdir"] = workdir
  print(json.dumps(line))
  print(
    f"{results['metric']}: {results['mean']:.4f} +- {results['ci95']:.4f} "
    f"over {results['episodes']} test episodes | "
    f"{config.get('paper_result', '')}"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
