"""Evaluation: a metric over many test episodes with a 95% confidence interval."""

from typing import Callable, NamedTuple, Optional

import jax
import numpy as np

from metajax import step as step_lib
from metajax.data.episodes import TaskSource, step_rng
from metajax.types import Learner, Params


class EvalResult(NamedTuple):
  """Mean of a per-episode metric and its 95% interval.

  Attributes:
    metric: "accuracy" or "mse".
    mean: mean over episodes.
    ci95: 1.96 * std / sqrt(n), the papers' interval (std with ddof=0).
    episodes: n.
    values: the per-episode values, float64 [n].
  """

  metric: str
  mean: float
  ci95: float
  episodes: int
  values: np.ndarray


def confidence_interval(values) -> float:
  """Half-width of the 95% normal interval of the mean: 1.96 std / sqrt(n)."""
  values = np.asarray(values, dtype=np.float64)
  if values.size == 0:
    raise ValueError("confidence_interval needs at least one value.")
  return float(1.96 * values.std() / np.sqrt(values.size))


def evaluate(
  learner: Learner,
  meta_params: Params,
  source: TaskSource,
  *,
  episodes: int = 600,
  batch_size: int = 50,
  seed: int = 0,
  eval_step: Optional[Callable] = None,
) -> EvalResult:
  """Mean metric over `episodes` episodes of `source`, with its 95% interval.

  Episodes come from `step_rng(seed, i)` for batch i, so the same seed gives
  the same episodes for every learner evaluated on the same source.

  Args:
    learner: the learner (e.g. built with the test-time inner steps).
    meta_params: its meta-parameters.
    source: a sampler over classes never seen in meta-training.
    episodes: number of test episodes (the papers use >= 600).
    batch_size: episodes per jitted call.
    seed: selects the episodes.
    eval_step: a `step.make_eval_step(learner)` to reuse (avoids a re-trace).

  Returns:
    An `EvalResult`.
  """
  if not isinstance(episodes, int) or episodes < 1:
    raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
  eval_step = eval_step or step_lib.make_eval_step(learner)
  batch_size = min(batch_size, episodes)
  key = jax.random.key(seed)
  batches = []
  num_batches = -(-episodes // batch_size)
  for i in range(num_batches):
    batch = source.sample_batch(step_rng(seed, i), batch_size)
    batches.append(
      np.asarray(eval_step(meta_params, batch, jax.random.fold_in(key, i)))
    )
  values = np.concatenate(batches)[:episodes].astype(np.float64)
  return EvalResult(
    metric=learner.metric_name,
    mean=float(values.mean()),
    ci95=confidence_interval(values),
    episodes=int(values.size),
    values=values,
  )
