r"""One fair comparison of every classification learner (issue 21).

  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.compare \
      --budget=cpu --workdir=/tmp/compare
  python -m experiments.compare --budget=cpu --workdir=/tmp/compare \
      --learners=protonet,maml --cells=5w1s,20w1s
  python -m experiments.compare --budget=cpu --workdir=/tmp/compare --report_only

Trains each learner at each cell (N-way K-shot) with the same data, backbone,
image size, number of training tasks, model selection and test episodes
(`experiments/comparison.py` says which fields are shared and why), each
cell in its own workdir `<workdir>/<learner>/<cell>`, and writes
`<output>/comparison.md` (the table) and `<output>/comparison.jsonl` (one
line per finished cell). A cell with results.json is not run again, a cell
with a checkpoint resumes from it, and the table is rewritten after every
finished cell, so a killed run loses at most the cell in progress.
"""

import json
import os
import sys
import time
from typing import Dict, List

from absl import app
from absl import flags
from absl import logging
import jax

from experiments import cache_flags
from experiments import compare_report as report
from experiments import comparison
from experiments import progress
from metajax import checkpoint
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import memory
from metajax import metrics_io
from metajax import runs
from metajax import train
from metajax.data import from_config as data_config

_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "The table's root: each cell is <workdir>/<learner>/<cell>.",
  required=True,
)
_BUDGET = flags.DEFINE_string(
  "budget", "cpu", f"A named budget: {', '.join(comparison.BUDGETS)}."
)
_LEARNERS = flags.DEFINE_list(
  "learners", list(comparison.LEARNERS), "Learners to train and report."
)
_CELLS = flags.DEFINE_list(
  "cells", list(comparison.CELLS), "Cells (N-way K-shot) to train."
)
_OUTPUT = flags.DEFINE_string(
  "output", "docs", "Folder of comparison.md and comparison.jsonl."
)
_REPORT_ONLY = flags.DEFINE_bool(
  "report_only",
  False,
  "Rewrite the table from the finished cells; train nothing.",
)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")

FLUSH_SECONDS = 30.0  # how often a running cell's seconds are saved


cell_dir, read_json = report.cell_dir, report.read_json


def device_kind() -> str:
  return jax.devices()[0].device_kind


class CellLog:
  """The cell's compare.json: its budget, devices and seconds, kept across
  resumes (saved every FLUSH_SECONDS while the cell runs)."""

  def __init__(self, workdir: str, budget: comparison.Budget, **extra):
    self._path = os.path.join(workdir, report.COMPARE_JSON)
    self.info = read_json(self._path) or {
      "budget": comparison.describe(budget),
      "devices": [],
      "seconds": 0.0,
    }
    self.info.update(extra)
    if device_kind() not in self.info["devices"]:
      self.info["devices"].append(device_kind())
    self._start = self._saved = time.monotonic()
    self._seconds = self.info["seconds"]
    self.save()  # the budget, before anything is trained

  def save(self) -> None:
    now = time.monotonic()
    self.info["seconds"] = round(self._seconds + now - self._start, 1)
    self._saved = now
    metrics_io.write_json(self._path, self.info)

  def tick(self) -> None:
    if time.monotonic() - self._saved > FLUSH_SECONDS:
      self.save()


def check_budget(
  root: str, learners: List[str], budget: comparison.Budget
) -> None:
  """Raises ValueError if a cell under `root` ran with another budget."""
  for learner in learners:
    for cell in comparison.CELLS:
      info = read_json(
        os.path.join(cell_dir(root, learner, cell), report.COMPARE_JSON)
      )
      if info is not None and info["budget"] != comparison.describe(budget):
        raise ValueError(
          f"{cell_dir(root, learner, cell)} ran with budget "
          f"{info['budget']}, not {comparison.describe(budget)}; a table "
          "holds one budget: use another --workdir."
        )


def _with_callback(log: CellLog, bar):
  def callback(step, metrics):
    log.tick()
    if bar is not None:
      bar(step, metrics)

  return callback


def _classes(config) -> Dict[str, int]:
  splits = data_config.load_splits(config)
  return {name: split.num_classes for name, split in splits.items()}


def _train(config, workdir: str, budget) -> None:
  """Trains (or resumes) and tests one cell in `workdir`."""
  config = from_config.validate(config)  # before anything is written
  os.makedirs(workdir, exist_ok=True)
  log = CellLog(workdir, budget, classes=_classes(config))
  bar = progress.ProgressBar(config.num_steps) if _PROGRESS.value else None
  try:
    runs.train_and_evaluate(config, workdir, callback=_with_callback(log, bar))
  finally:
    if bar is not None:
      bar.close()
    log.save()


def _test_shared(config, workdir: str, trained: str, budget) -> None:
  """Tests the run in `trained` at the cell's test sizes (its training
  config must equal this cell's but for the test fields)."""
  run = runs.load_run(trained)  # the state of the best validation
  config = from_config.validate(config)
  config.num_classes = run.config.num_classes
  differ = comparison.training_difference(run.config, config)
  if differ:
    raise ValueError(
      f"{workdir} cannot test the run in {trained}: their "
      f"training configs differ in {', '.join(differ)}."
    )
  os.makedirs(workdir, exist_ok=True)
  log = CellLog(
    workdir,
    budget,
    classes=_classes(config),
    trained_in=os.path.basename(trained),
  )
  source = from_config.build_sources(config)["test"]
  result = eval_lib.evaluate(
    from_config.build_learner(config, test=True),
    run.meta_params,
    source,
    episodes=config.eval_episodes,
    seed=from_config.test_seed(config),
  )
  selected = {
    k: v
    for k, v in read_json(os.path.join(trained, "results.json")).items()
    if k.startswith("selected_")
  }
  metrics_io.write_json(
    os.path.join(workdir, "results.json"),
    {
      "config": json.loads(config.to_json()),
      "metric": result.metric,
      "mean": result.mean,
      "ci95": result.ci95,
      "episodes": result.episodes,
      **selected,
      "trained_in": os.path.basename(trained),
    },
  )
  log.save()


def run_cell(root: str, learner: str, cell: str, budget) -> bool:
  """Runs the cell unless it is finished; True if it ran."""
  workdir = cell_dir(root, learner, cell)
  if os.path.exists(os.path.join(workdir, "results.json")):
    return False
  config = comparison.cell_config(learner, cell, budget)
  trained = comparison.trained_cell(learner, cell)
  print(
    f"compare: {learner} {cell}"
    + (
      f" (testing the {trained} run)"
      if trained
      else f" ({config.num_steps} steps x {config.meta_batch_size})"
    ),
    flush=True,
  )
  if trained:
    run_cell(root, learner, trained, budget)
    _test_shared(config, workdir, cell_dir(root, learner, trained), budget)
  else:
    _train(config, workdir, budget)
  return True


def _check_flags() -> comparison.Budget:
  """The budget; exits with one line on a bad flag."""

  def fail(message):
    sys.exit(f"compare: {message}")

  if _BUDGET.value not in comparison.BUDGETS:
    fail(
      f"--budget={_BUDGET.value}: unknown budget; valid: "
      f"{', '.join(comparison.BUDGETS)}."
    )
  for name, flag, valid in (
    ("learners", _LEARNERS, comparison.LEARNERS),
    ("cells", _CELLS, comparison.CELLS),
  ):
    unknown = [v for v in flag.value if v not in valid]
    if unknown or not flag.value:
      what = f"unknown {name[:-1]} {unknown[0]!r}" if unknown else "empty"
      fail(f"--{name}: {what}; valid: {', '.join(valid)}.")
  return comparison.BUDGETS[_BUDGET.value]


def command(budget: comparison.Budget, learners: List[str]) -> str:
  """The command that reproduces the table (the workdir as W)."""
  line = f"python -m experiments.compare --budget={budget.name} --workdir=W"
  if tuple(learners) != comparison.LEARNERS:
    line += f" --learners={','.join(learners)}"
  return line


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
  budget = _check_flags()
  learners = [l for l in comparison.LEARNERS if l in _LEARNERS.value]
  root = _WORKDIR.value
  try:
    check_budget(root, learners, budget)
  except ValueError as e:
    sys.exit(f"compare: {e}")
  cache_flags.apply()
  write = lambda: report.write(
    root, learners, budget, _OUTPUT.value, command(budget, learners)
  )
  write()
  if _REPORT_ONLY.value:
    return
  for learner in learners:
    for cell in [c for c in comparison.CELLS if c in _CELLS.value]:
      try:
        ran = run_cell(root, learner, cell, budget)
      except (
        from_config.ConfigError,
        checkpoint.CheckpointError,
        train.NonFiniteError,
        memory.StepMemoryError,
        ValueError,
      ) as e:
        sys.exit(f"compare: {learner} {cell}: {type(e).__name__}: {e}")
      if ran:
        write()


if __name__ == "__main__":
  app.run(main)
