"""The sinusoid regression task family of the MAML paper (Finn et al. 2017).

Each task is y = A sin(x + phi) with A ~ U[0.1, 5], phi ~ U[0, pi], and inputs
x ~ U[-5, 5]; K support and Q query points per task.
"""

from typing import Tuple

import numpy as np

from metajax.types import Episode


class SinusoidSampler:
  """Samples sinusoid regression tasks.

  Args:
    shots: K, support points per task.
    queries: query points per task.
    amplitude_range, phase_range, input_range: the task distribution; the
      defaults are the MAML paper's.
  """

  def __init__(
    self,
    *,
    shots: int,
    queries: int,
    amplitude_range: Tuple[float, float] = (0.1, 5.0),
    phase_range: Tuple[float, float] = (0.0, np.pi),
    input_range: Tuple[float, float] = (-5.0, 5.0),
  ):
    for name, v in (("shots", shots), ("queries", queries)):
      if not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")
    self.shots, self.queries = shots, queries
    self.amplitude_range = amplitude_range
    self.phase_range = phase_range
    self.input_range = input_range

  def sample_tasks(self, rng: np.random.Generator, n: int):
    """Returns (amplitude [n], phase [n])."""
    amplitude = rng.uniform(*self.amplitude_range, size=n)
    phase = rng.uniform(*self.phase_range, size=n)
    return amplitude, phase

  def sample_batch(
    self, rng: np.random.Generator, meta_batch_size: int
  ) -> Episode:
    """A meta-batch: x and y arrays of shape [T, K, 1], float32."""
    if meta_batch_size < 1:
      raise ValueError(f"meta_batch_size must be >= 1, got {meta_batch_size}.")
    amplitude, phase = self.sample_tasks(rng, meta_batch_size)
    x = rng.uniform(
      *self.input_range, size=(meta_batch_size, self.shots + self.queries, 1)
    )
    y = amplitude[:, None, None] * np.sin(x + phase[:, None, None])
    x, y = x.astype(np.float32), y.astype(np.float32)
    k = self.shots
    return Episode(
      support_x=x[:, :k], support_y=y[:, :k], query_x=x[:, k:], query_y=y[:, k:]
    )

  def sample(self, rng: np.random.Generator) -> Episode:
    """One task, without the task axis."""
    batch = self.sample_batch(rng, 1)
    return Episode(*(a[0] for a in batch))
