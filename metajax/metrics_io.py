"""Metrics to `<workdir>/metrics.jsonl` and TensorBoard event files.

TensorBoard files are written with tensorboardX, so tensorflow is not needed.
"""

import json
import os
from typing import Mapping, Optional

import numpy as np


class MetricWriter:
  """Appends one JSON object per (step, metrics) and mirrors scalars to TensorBoard.

  Args:
    workdir: the run's folder.
    resume_step: when resuming from a checkpoint at this step, lines of the
      JSONL file with a larger step (written after that checkpoint by the run
      that crashed) are dropped, so the file matches an uninterrupted run.
    tensorboard: also write event files under `<workdir>/tensorboard`.
  """

  def __init__(
    self,
    workdir: str,
    resume_step: Optional[int] = None,
    tensorboard: bool = True,
  ):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None and os.path.exists(self.path):
      _truncate_after(self.path, resume_step)
    elif resume_step is None and os.path.exists(self.path):
      os.remove(self.path)  # a fresh run starts a fresh file
    self._file = open(self.path, "a", encoding="utf-8")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._tb = SummaryWriter(
        os.path.join(workdir, "tensorboard"), purge_step=resume_step
      )

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    """Appends a line `{"step": step, **metrics}` to metrics.jsonl, and the
    scalar metrics to TensorBoard."""
    row = {"step": int(step)}
    row.update({k: _to_python(v) for k, v in metrics.items()})
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    if self._tb is not None:
      for k, v in metrics.items():
        if np.ndim(v) == 0:
          self._tb.add_scalar(k, float(v), int(step))

  def close(self) -> None:
    """Closes metrics.jsonl and the TensorBoard writer."""
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def _to_python(v):
  v = np.asarray(v)
  return v.item() if v.ndim == 0 else v.tolist()


def _truncate_after(path: str, step: int) -> None:
  with open(path, encoding="utf-8") as f:
    rows = [line for line in f if line.strip()]
  kept = []
  for line in rows:
    try:
      if json.loads(line)["step"] <= step:
        kept.append(line)
    except (ValueError, KeyError):
      break  # a torn last line from a crash
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(kept)
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  """Writes `obj` as JSON to `path` atomically (a temporary file, renamed)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def read_metrics(workdir: str):
  """All rows of `<workdir>/metrics.jsonl` as dicts."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
