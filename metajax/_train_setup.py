"""How `train.meta_train` starts a run, before its first step.

Its arguments are checked, the initial state made (or the one given taken)
and replicated over the mesh, the latest checkpoint restored, the first
batch's labels checked and the step compiled ahead (its memory checked); only
then are the run's outputs opened, so that a run that cannot work fails
before anything is trained or written.
"""

import contextlib
import itertools
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Tuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from metajax import best as best_lib
from metajax import metrics_io
from metajax import parallel
from metajax.data.episodes import TaskSource, step_rng
from metajax.memory import check_step_fits
from metajax.step import TrainState, init_train_state, seed_keys
from metajax.step import make_eval_step, make_meta_step
from metajax.types import Episode, Learner

# `callback(step, metrics)`, called by `meta_train` after each step.
Callback = Callable[[int, Dict[str, float]], None]


class Options(NamedTuple):
  """`meta_train`'s keyword arguments, as given (see its docstring)."""

  outer_opt: optax.GradientTransformation
  num_steps: int
  meta_batch_size: int
  seed: int
  workdir: Optional[str]
  checkpoint_every: int
  log_every: int
  val_source: Optional[TaskSource]
  val_learner: Optional[Learner]
  val_every: int
  val_episodes: int
  callback: Optional[Callback]
  on_nonfinite: str
  initial_state: Optional[TrainState]
  mesh: Optional[Mesh]
  tasks_per_chunk: Optional[int]
  check_memory: bool
  keep_best: bool


class Start(NamedTuple):
  """A run ready for its first step (with its state, `start`'s result)."""

  restored: bool  # whether the state is a checkpoint of the workdir's
  meta_step: Callable  # compiled ahead where there is a step to take
  host_batches: Iterator[Episode]  # this process's, from the first step on
  mesh: Mesh
  train_key: jax.Array
  val_learner: Learner
  val_step: Optional[Callable]  # None without a val_source
  checkpointer: Any  # a `checkpoint.Checkpointer`, None without a workdir
  writer: Optional[metrics_io.MetricWriter]  # process 0's, with a workdir
  best: Optional[best_lib.BestKeeper]  # with keep_best


def check_arguments(learner: Learner, options: Options) -> None:
  """Raises ValueError, naming the argument, before anything is done."""
  for name, value, low in (
    ("num_steps", options.num_steps, 0),
    ("meta_batch_size", options.meta_batch_size, 1),
    ("checkpoint_every", options.checkpoint_every, 1),
    ("log_every", options.log_every, 1),
    ("val_every", options.val_every, 0),
    ("val_episodes", options.val_episodes, 1),
  ):
    if not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
  seed = options.seed
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
  if options.on_nonfinite not in ("raise", "skip"):
    raise ValueError(
      f"on_nonfinite must be 'raise' or 'skip', got {options.on_nonfinite!r}."
    )
  if options.keep_best:
    missing = [
      name
      for name, given in (
        ("workdir", options.workdir is not None),
        ("val_source", options.val_source is not None),
        ("val_every > 0", options.val_every > 0),
      )
      if not given
    ]
    if missing:
      raise ValueError(
        "keep_best needs validation and a place to keep the "
        f"best state: give {' and '.join(missing)}."
      )
    metric = (options.val_learner or learner).metric_name
    if metric not in best_lib.HIGHER_IS_BETTER:
      raise ValueError(
        f"keep_best: no order for the validation metric "
        f"{metric!r}; known: {sorted(best_lib.HIGHER_IS_BETTER)}."
      )


def initial_train_state(
  learner: Learner,
  outer_opt: optax.GradientTransformation,
  source: TaskSource,
  seed: int,
  initial_state: Optional[TrainState],
  mesh: Mesh,
) -> TrainState:
  """`initial_state`, or a fresh one from the seed; replicated over `mesh`."""
  if initial_state is None:
    # Jitted: an un-jitted conv4 init runs op by op and takes seconds.
    example = source.sample_batch(step_rng(seed, 0), 1)
    state = jax.jit(lambda k, ex: init_train_state(learner, outer_opt, k, ex))(
      seed_keys(seed)[0], example
    )
  else:
    state = initial_state
  # Replicated over the mesh (committed), as the step's outputs are:
  # otherwise the second step sees other input shardings and compiles again.
  return parallel.put_replicated(state, mesh)


def batches(
  source: TaskSource, seed: int, start: int, stop: int, tasks: int
) -> Iterator[Episode]:
  """This process's `tasks` tasks of each step (`parallel.process_rng`)."""
  for step in range(start, stop):
    yield source.sample_batch(parallel.process_rng(seed, step), tasks)


def check_labels(learner: Learner, meta_params, batch: Episode) -> None:
  """Raises ValueError if an episode's class labels lie outside 0..N-1 for
  the learner's N outputs (a task source of one's own: such a label would
  one-hot to zeros and silently train on nothing)."""
  if learner.train_on != "episodes" or learner.metric_name != "accuracy":
    return
  labels = {
    "support_y": np.asarray(batch.support_y),
    "query_y": np.asarray(batch.query_y),
  }
  for name, y in labels.items():
    if not np.issubdtype(y.dtype, np.integer):
      raise ValueError(
        f"The task source's {name} has dtype {y.dtype}; "
        "classification labels must be integers."
      )
  example = jax.tree.map(lambda a: a[0], batch)
  outputs = jax.eval_shape(
    lambda p, ep: learner.predict(
      p,
      learner.adapt(p, (ep.support_x, ep.support_y), jax.random.key(0)),
      ep.query_x,
    ),
    meta_params,
    example,
  )
  ways = outputs.shape[-1]
  for name, y in labels.items():
    if y.size and (y.min() < 0 or y.max() >= ways):
      raise ValueError(
        f"The task source's {name} holds labels {y.min()}..{y.max()}, but "
        f"the learner has {ways} outputs: labels must lie in 0..{ways - 1}."
      )


def compile_ahead(
  meta_step: jax.stages.Wrapped,
  learner: Learner,
  state: TrainState,
  host_batches: Iterator[Episode],
  key: jax.Array,
  mesh: Mesh,
  check_memory: bool,
):
  """(the meta-step compiled for the first batch, the batches).

  Compiled before the loop, so that a step too large for the device's memory
  raises `StepMemoryError` (and labels outside the learner's outputs a
  ValueError) before anything is trained or written. The first batch is
  sampled once: the batches returned start with it again.
  """
  first_host = next(host_batches)
  check_labels(learner, state.meta_params, first_host)
  first = parallel.put_batch(first_host, mesh)
  compiled = meta_step.lower(state, first, key).compile()
  if check_memory:
    check_step_fits(compiled, jax.local_devices()[0])
  return compiled, itertools.chain([first_host], host_batches)


def start(
  stack: contextlib.ExitStack,
  learner: Learner,
  source: TaskSource,
  options: Options,
) -> Tuple[TrainState, Start]:
  """(the first state, the run): a run, its arguments checked, readied for
  its first step.

  The state is restored from the workdir where it holds a checkpoint. What it
  opens (the checkpointer, the metric writer, the best-state keeper)
  is closed by `stack`.
  """
  mesh = options.mesh if options.mesh is not None else parallel.task_mesh()
  local_tasks = parallel.check_meta_batch_size(options.meta_batch_size, mesh)
  train_key = seed_keys(options.seed)[1]
  state = initial_train_state(
    learner,
    options.outer_opt,
    source,
    options.seed,
    options.initial_state,
    mesh,
  )
  meta_step = make_meta_step(
    learner,
    options.outer_opt,
    mesh=mesh,
    tasks_per_chunk=options.tasks_per_chunk,
  )
  val_learner = options.val_learner or learner
  val_step = (
    make_eval_step(val_learner) if options.val_source is not None else None
  )
  primary = jax.process_index() == 0

  checkpointer = restored_step = best = writer = None
  if options.workdir is not None:
    # orbax is imported for runs kept in a workdir only.
    from metajax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top

    checkpointer = ckpt_lib.Checkpointer(options.workdir)
    stack.callback(checkpointer.close)
    restored_step, state = checkpointer.restore(state)
  first = int(state.step)
  host_batches = batches(
    source, options.seed, first, options.num_steps, local_tasks
  )
  if first < options.num_steps:
    meta_step, host_batches = compile_ahead(
      meta_step,
      learner,
      state,
      host_batches,
      jax.random.fold_in(train_key, first),
      mesh,
      options.check_memory,
    )
  if options.keep_best:
    assert options.workdir is not None  # check_arguments: keep_best needs one
    best = best_lib.BestKeeper(options.workdir, primary)
    stack.callback(best.close)
  if options.workdir is not None and primary:
    writer = metrics_io.MetricWriter(
      options.workdir, resume_step=first if restored_step is not None else None
    )
    stack.callback(writer.close)
  return state, Start(
    restored=restored_step is not None,
    meta_step=meta_step,
    host_batches=host_batches,
    mesh=mesh,
    train_key=train_key,
    val_learner=val_learner,
    val_step=val_step,
    checkpointer=checkpointer,
    writer=writer,
    best=best,
  )
