"""The state of the best validation so far, kept beside a run's checkpoints.

`meta_train(keep_best=True)` keeps it in `<workdir>/best` and its step and
value in `<workdir>/best.json`; `runs` evaluates it with
`config.select_on_validation`.
"""

import json
import os
from typing import Optional

from metajax import metrics_io
from metajax.evaluate import EvalResult
from metajax.step import TrainState

# Validation metrics, and whether a higher value is better.
HIGHER_IS_BETTER = {"accuracy": True, "mse": False}
BEST_FOLDER = "best"  # <workdir>/best: checkpoints of the best validation
BEST_JSON = "best.json"  # <workdir>/best.json: which step, and its value


def read_best(workdir: str) -> Optional[dict]:
  """The best validation so far of the run in `workdir` (`keep_best`), or None.

  A dict with "step" (the checkpoint in `<workdir>/best` that holds it),
  "metric", "mean" and "ci95".
  """
  path = os.path.join(workdir, BEST_JSON)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _improves(metric: str, new: float, old: float) -> bool:
  """Strictly better (a tie keeps the earlier step)."""
  return new > old if HIGHER_IS_BETTER[metric] else new < old


class BestKeeper:
  """Keeps the state of the best validation so far (`keep_best`).

  The state goes to `<workdir>/best`, then its step and value to best.json: a
  crash in between leaves a newer checkpoint best.json does not name, dropped
  when the run resumes. Two are kept, so the one it names survives a crash
  during the next save.
  """

  def __init__(self, workdir: str, primary: bool):
    self._workdir, self._primary = workdir, primary
    self._best = read_best(workdir)
    from metajax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top

    self._checkpointer = ckpt_lib.Checkpointer(
      workdir, max_to_keep=2, folder=BEST_FOLDER
    )
    for saved in self._checkpointer.all_steps():
      if self._best is None or saved != self._best["step"]:
        self._checkpointer.delete(saved)

  def offer(self, step: int, state: TrainState, result: EvalResult) -> None:
    """Keeps `state` if `result` is strictly better than the best so far."""
    if self._best is not None and not _improves(
      result.metric, result.mean, self._best["mean"]
    ):
      return
    self._checkpointer.save(step, state)
    self._checkpointer.wait()
    self._best = {
      "step": step,
      "metric": result.metric,
      "mean": result.mean,
      "ci95": result.ci95,
    }
    if self._primary:
      metrics_io.write_json(os.path.join(self._workdir, BEST_JSON), self._best)

  def close(self) -> None:
    """Closes the checkpointer of `<workdir>/best`."""
    self._checkpointer.close()
