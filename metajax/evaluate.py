"""Evaluation: a metric over many test episodes with a 95% confidence interval."""

from typing import Callable, NamedTuple, Optional

import jax
import numpy as np

from metajax.data.episodes import TaskSource, step_rng
from metajax.types import Episode, Learner, Params


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


def vmap_tasks(fn: Callable, batch: Episode, key: jax.Array, *,
               split: bool = True):
  """`fn(episode, key)` vmapped over the task axis, one split key per task.

  With `split=False`, `key` is already one key per task ([T] keys).
  """
  keys = jax.random.split(key, jax.tree.leaves(batch)[0].shape[0]) if (
      split) else key
  return jax.vmap(fn)(batch, keys)


def task_metrics(learner: Learner, meta_params: Params, batch: Episode,
                 key: jax.Array, *, split: bool = True,
                 tasks_per_chunk: Optional[int] = None):
  """Per-task (query loss, query metric) of a meta-batch, over the task axis.

  `key` is split into one key per task (`split=False`: it already is). The
  tasks are vmapped all at once (`tasks_per_chunk=None`) or taken
  `tasks_per_chunk` at a time under `lax.map`; each task gets the same key
  either way, so the values agree.
  """

  def one(episode, k):
    state = learner.adapt(meta_params, (episode.support_x, episode.support_y), k)
    outputs = learner.predict(meta_params, state, episode.query_x)
    return (learner.loss(outputs, episode.query_y),
            learner.metric(outputs, episode.query_y))

  if tasks_per_chunk is None:
    return vmap_tasks(one, batch, key, split=split)
  keys = jax.random.split(key, jax.tree.leaves(batch)[0].shape[0]) if (
      split) else key
  return jax.lax.map(lambda args: one(*args), (batch, keys),
                     batch_size=tasks_per_chunk)


def auto_eval_chunk(platform: str) -> Optional[int]:
  """Episodes evaluated at once by default: 1 on CPU, all of a batch elsewhere.

  As for the training step (`train.auto_tasks_per_chunk`): on the 2-core CPU
  one episode at a time keeps its activations in cache (measured in the
  README's Benchmark section); accelerators need the batch to fill them.
  """
  return 1 if platform == "cpu" else None


def make_eval_step(learner: Learner, *, tasks_per_chunk: Optional[int] = -1
                   ) -> Callable:
  """Jitted (meta_params, batch, key) -> per-task metric [T].

  `tasks_per_chunk`: episodes adapted at once (None: the whole batch,
  vmapped); the default -1 picks `auto_eval_chunk` of the default backend.
  """
  if tasks_per_chunk == -1:
    tasks_per_chunk = auto_eval_chunk(jax.default_backend())
  if tasks_per_chunk is not None and (
      not isinstance(tasks_per_chunk, (int, np.integer)) or tasks_per_chunk < 1):
    raise ValueError("tasks_per_chunk must be None or an integer >= 1, got "
                     f"{tasks_per_chunk!r}.")
  return jax.jit(lambda p, b, k: task_metrics(
      learner, p, b, k, tasks_per_chunk=tasks_per_chunk)[1])


def evaluate(learner: Learner, meta_params: Params, source: TaskSource, *,
             episodes: int = 600, batch_size: int = 50, seed: int = 0,
             eval_step: Optional[Callable] = None) -> EvalResult:
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
    eval_step: a `make_eval_step(learner)` to reuse (avoids a re-trace).

  Returns:
    An `EvalResult`.
  """
  if not isinstance(episodes, int) or episodes < 1:
    raise ValueError(f"episodes must be an integer >= 1, got {episodes!r}.")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
  eval_step = eval_step or make_eval_step(learner)
  batch_size = min(batch_size, episodes)
  key = jax.random.key(seed)
  values = []
  num_batches = -(-episodes // batch_size)
  for i in range(num_batches):
    batch = source.sample_batch(step_rng(seed, i), batch_size)
    values.append(np.asarray(eval_step(meta_params, batch,
                                       jax.random.fold_in(key, i))))
  values = np.concatenate(values)[:episodes].astype(np.float64)
  return EvalResult(metric=learner.metric_name, mean=float(values.mean()),
                    ci95=confidence_interval(values), episodes=int(values.size),
                    values=values)
