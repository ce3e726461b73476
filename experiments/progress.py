"""A tqdm progress bar for the binaries, fed by `meta_train`'s callback."""

from typing import Dict, Optional

import tqdm


class ProgressBar:
  """A `meta_train` callback that draws a progress bar.

  The bar (on stderr) advances to each step and shows that step's training
  metrics; each validation is written as a line above it (on stdout, by
  `tqdm.write`). The bar starts at the first step the run takes (after a
  resume: the step after the checkpoint) and closes at the last, so its rate
  counts training steps, not compilation, restoring or the final evaluation.

  Example:
    bar = ProgressBar(config.num_steps)
    try:
      runs.train_and_evaluate(config, workdir, callback=bar)
    finally:
      bar.close()
  """

  def __init__(self, total: int):
    self._total = total
    self._bar: Optional[tqdm.tqdm] = None

  def __call__(self, step: int, metrics: Dict[str, float]) -> None:
    if self._bar is None:
      self._bar = tqdm.tqdm(
        total=self._total, initial=step - 1, dynamic_ncols=True
      )
    self._bar.update(step - self._bar.n)
    if "nonfinite" not in metrics:  # a dropped step keeps the last values
      self._bar.set_postfix(
        {k: f"{v:.4f}" for k, v in metrics.items() if not k.startswith("val/")},
        refresh=False,
      )
    for key, value in metrics.items():
      if key.startswith("val/") and not key.endswith("_ci95"):
        self._bar.write(
          f"step {step}: val {key[len('val/') :]} {value:.4f} "
          f"+- {metrics[key + '_ci95']:.4f}"
        )
    if step >= self._total:
      self._bar.close()

  def close(self) -> None:
    """Closes the bar (if a step was shown; closing twice is harmless)."""
    if self._bar is not None:
      self._bar.close()
