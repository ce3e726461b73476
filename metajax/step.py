"""The device programs: meta-objective and gradient, meta-step, eval step.

A meta-step is: for each task of the meta-batch (vmapped), adapt on the support
set, predict the queries, take the query loss; average; differentiate with
respect to the meta-parameters; apply an optax outer optimizer. The eval step
is the same adaptation and prediction, returning each task's metric. Both can
take the tasks a chunk at a time (`auto_tasks_per_chunk`).
"""

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from metajax import parallel
from metajax.types import Episode, Learner, Params


class TrainState(NamedTuple):
  """The trainer's state between meta-steps.

  Attributes:
    step: [] int32, the meta-steps done (skipped ones too).
    meta_params: the learner's meta-parameters.
    opt_state: the outer optimizer's state.
  """

  step: jax.Array  # [] int32, meta-steps done (skipped ones too)
  meta_params: Params  # the learner's meta-parameters
  opt_state: optax.OptState  # the outer optimizer's state


def seed_keys(seed: int):
  """(init_key, train_key) derived from the run's seed."""
  return tuple(jax.random.split(jax.random.key(seed)))


def vmap_tasks(
  fn: Callable, batch: Episode, key: jax.Array, *, split: bool = True
):
  """`fn(episode, key)` vmapped over the task axis, one split key per task.

  With `split=False`, `key` is already one key per task ([T] keys).
  """
  keys = (
    jax.random.split(key, jax.tree.leaves(batch)[0].shape[0])
    if (split)
    else key
  )
  return jax.vmap(fn)(batch, keys)


def task_metrics(
  learner: Learner,
  meta_params: Params,
  batch: Episode,
  key: jax.Array,
  *,
  split: bool = True,
  tasks_per_chunk: Optional[int] = None,
):
  """Per-task (query loss, query metric) of a meta-batch, over the task axis.

  `key` is split into one key per task (`split=False`: it already is). The
  tasks are vmapped all at once (`tasks_per_chunk=None`) or taken
  `tasks_per_chunk` at a time under `lax.map`; each task gets the same key
  either way, so the values agree.
  """

  def one(episode, k):
    support = (episode.support_x, episode.support_y)
    state = learner.adapt(meta_params, support, k)
    outputs = learner.predict(meta_params, state, episode.query_x)
    return (
      learner.loss(outputs, episode.query_y),
      learner.metric(outputs, episode.query_y),
    )

  if tasks_per_chunk is None:
    return vmap_tasks(one, batch, key, split=split)
  keys = (
    jax.random.split(key, jax.tree.leaves(batch)[0].shape[0])
    if (split)
    else key
  )
  return jax.lax.map(
    lambda args: one(*args), (batch, keys), batch_size=tasks_per_chunk
  )


def meta_loss(
  learner: Learner,
  meta_params: Params,
  batch: Episode,
  key: jax.Array,
  *,
  split: bool = True,
):
  """Mean training objective over a meta-batch; aux: mean metric.

  The objective is the query loss after adaptation, or the learner's own
  `task_loss` where it has one. `key` is split into one key per task
  (`split=False`: it already is, [T] keys).
  """
  task_loss = learner.task_loss
  if task_loss is None:
    task_losses, task_metric = task_metrics(
      learner, meta_params, batch, key, split=split
    )
  else:
    task_losses, task_metric = vmap_tasks(
      lambda ep, k: task_loss(meta_params, ep, k), batch, key, split=split
    )
  return task_losses.mean(), task_metric.mean()


def meta_gradient(
  learner: Learner,
  meta_params: Params,
  batch: Episode,
  key: jax.Array,
  num_chunks: int = 1,
):
  """((loss, metric), outer gradient) of a meta-batch, averaged over tasks.

  With `num_chunks` > 1 the tasks are processed in that many equal chunks, one
  after the other (`lax.scan`), and the chunks' gradients are averaged: the
  same result (each task keeps its key), with the memory of one chunk's
  activations instead of the whole meta-batch's. Chunk i holds the tasks
  i, i + num_chunks, i + 2 num_chunks, ..., so a meta-batch sharded over
  devices stays where it is: every device works on its own tasks.
  """
  tasks = jax.tree.leaves(batch)[0].shape[0]
  if not isinstance(num_chunks, int) or num_chunks < 1 or tasks % num_chunks:
    raise ValueError(
      f"num_chunks must be a positive integer that divides the "
      f"{tasks} tasks of the meta-batch, got {num_chunks!r}."
    )
  keys = jax.random.split(key, tasks)

  outer_grad = learner.outer_grad

  def grads_of(chunk, chunk_keys):
    if outer_grad is None:
      return jax.value_and_grad(
        lambda p: meta_loss(learner, p, chunk, chunk_keys, split=False),
        has_aux=True,
      )(meta_params)
    grads, (task_losses, task_metric) = vmap_tasks(
      lambda ep, k: outer_grad(meta_params, ep, k),
      chunk,
      chunk_keys,
      split=False,
    )
    grads = jax.tree.map(lambda g: g.mean(axis=0), grads)
    return (task_losses.mean(), task_metric.mean()), grads

  if num_chunks == 1:
    return grads_of(batch, keys)

  def split(x):  # [T, ...] -> [num_chunks, T / num_chunks, ...]
    x = x.reshape((tasks // num_chunks, num_chunks) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)

  def body(total, xs):
    (loss, metric), grads = grads_of(*xs)
    return jax.tree.map(jnp.add, total, grads), (loss, metric)

  # The gradients (of the meta-parameters, or outer "gradients" shaped like
  # them) are summed in the carry; each chunk's loss and metric come out.
  total, (losses, metrics) = jax.lax.scan(
    body,
    jax.tree.map(jnp.zeros_like, meta_params),
    (jax.tree.map(split, batch), split(keys)),
  )
  return (
    (losses.mean(), metrics.mean()),
    jax.tree.map(lambda t: t / num_chunks, total),
  )


def outer_optimizer(
  learner: Learner, outer_opt: optax.GradientTransformation
) -> optax.GradientTransformation:
  """`outer_opt` as `learner` needs it: wrapped by its `wrap_outer_opt`
  (Reptile's carried statistics are set, not stepped). `init_train_state`
  and `make_meta_step` apply it, so callers pass the plain optimizer."""
  if learner.wrap_outer_opt is None:
    return outer_opt
  return learner.wrap_outer_opt(outer_opt)


def init_train_state(
  learner: Learner,
  outer_opt: optax.GradientTransformation,
  key: jax.Array,
  example_batch: Episode,
) -> TrainState:
  """Initial meta-parameters (from one task of `example_batch`), opt state."""
  example = jax.tree.map(lambda a: a[0], example_batch)
  meta_params = learner.init(key, example)
  opt_state = outer_optimizer(learner, outer_opt).init(meta_params)
  return TrainState(
    step=jnp.zeros([], jnp.int32), meta_params=meta_params, opt_state=opt_state
  )


def auto_tasks_per_chunk(platform: str) -> Optional[int]:
  """The default chunk of both steps: 1 task on CPU, all at once elsewhere.

  On a CPU one task's activations stay in cache, so taking the tasks one at a
  time is faster than vmapping them and needs about half the memory; on GPUs
  and TPUs the vmapped tasks are what fills the device. The numbers:
  docs/benchmark.md (`python -m experiments.benchmark`).
  """
  return 1 if platform == "cpu" else None


def make_meta_step(
  learner: Learner,
  outer_opt: optax.GradientTransformation,
  *,
  mesh: Optional[Mesh] = None,
  tasks_per_chunk: Optional[int] = None,
) -> jax.stages.Wrapped:
  """A jitted `step(state, batch, key) -> (state, metrics)`.

  `metrics` holds the meta-batch's mean query "loss", the learner's metric
  (e.g. "accuracy") and "grad_norm". The input state's buffers are donated.

  Args:
    learner: the learner.
    outer_opt: the outer optimizer (the learner's `wrap_outer_opt` is
      applied here).
    mesh: a `parallel.task_mesh`: the batch's task axis is sharded over its
      devices and the state replicated (the batch and state must be placed so,
      e.g. by `parallel.put_batch` and `parallel.put_replicated`). None: no
      sharding constraints (one device, as placed by the caller).
    tasks_per_chunk: tasks each device adapts at once; the meta-batch is then
      processed in chunks one after the other (see `meta_gradient`), which
      bounds memory by one chunk's activations. It must divide the tasks per
      device (the per-device count itself: all at once). None: automatic,
      `auto_tasks_per_chunk` of the devices' platform.
  """
  outer_opt = outer_optimizer(learner, outer_opt)
  devices = 1 if mesh is None else mesh.devices.size
  platform = (
    jax.default_backend() if mesh is None else mesh.devices.flat[0].platform
  )
  chunk = (
    auto_tasks_per_chunk(platform)
    if tasks_per_chunk is None
    else tasks_per_chunk
  )

  def step(state: TrainState, batch: Episode, key: jax.Array):
    num_chunks = 1
    if chunk is not None:
      tasks = jax.tree.leaves(batch)[0].shape[0]
      per_device = tasks // devices
      if (
        not isinstance(chunk, (int, np.integer))
        or chunk < 1
        or per_device % chunk
      ):
        raise ValueError(
          f"tasks_per_chunk must be a positive integer that divides the "
          f"{per_device} tasks per device ({tasks} tasks over {devices} "
          f"devices), got {chunk!r}."
        )
      num_chunks = per_device // int(chunk)
    (loss, metric), grads = meta_gradient(
      learner, state.meta_params, batch, key, num_chunks
    )
    updates, opt_state = outer_opt.update(
      grads, state.opt_state, state.meta_params
    )
    meta_params = optax.apply_updates(state.meta_params, updates)
    metrics = {
      "loss": loss,
      learner.metric_name: metric,
      "grad_norm": optax.tree.norm(grads),
    }
    return TrainState(state.step + 1, meta_params, opt_state), metrics

  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  whole = parallel.replicated(mesh)
  return jax.jit(
    step,
    donate_argnums=0,
    in_shardings=(whole, parallel.task_sharding(mesh), whole),
    out_shardings=(whole, whole),
  )


def make_eval_step(
  learner: Learner, *, tasks_per_chunk: Optional[int] = -1
) -> Callable:
  """Jitted (meta_params, batch, key) -> per-task metric [T].

  `tasks_per_chunk`: episodes adapted at once (None: the whole batch,
  vmapped); the default -1 picks `auto_tasks_per_chunk` of the default
  backend.
  """
  if tasks_per_chunk == -1:
    tasks_per_chunk = auto_tasks_per_chunk(jax.default_backend())
  if tasks_per_chunk is not None and (
    not isinstance(tasks_per_chunk, (int, np.integer)) or tasks_per_chunk < 1
  ):
    raise ValueError(
      "tasks_per_chunk must be None or an integer >= 1, got "
      f"{tasks_per_chunk!r}."
    )
  return jax.jit(
    lambda p, b, k: task_metrics(
      learner, p, b, k, tasks_per_chunk=tasks_per_chunk
    )[1]
  )
