"""The meta-training loop, around the one jitted meta-step of `step`.

`meta_train` is built from small parts, in the order a run meets them:
argument checks, the initial state, the restore, the step compiled ahead (its
memory checked), then per step the non-finite policy, validation (and the
best state), the checkpoint and the caller's callback.
"""

import contextlib
import itertools
import math
from typing import Callable, Dict, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from metajax import best as best_lib
from metajax import metrics_io
from metajax import parallel
from metajax.data.episodes import TaskSource, prefetch_to_device, step_rng
from metajax.evaluate import evaluate
from metajax.memory import check_step_fits
from metajax.step import TrainState, init_train_state, seed_keys
from metajax.step import make_eval_step, make_meta_step
from metajax.types import Episode, Learner

# `callback(step, metrics)`, called by `meta_train` after each step.
Callback = Callable[[int, Dict[str, float]], None]


class NonFiniteError(FloatingPointError):
  """Raised when the meta-loss or meta-gradient stops being finite."""


def _check_arguments(
  learner: Learner,
  *,
  num_steps,
  meta_batch_size,
  seed,
  workdir,
  checkpoint_every,
  log_every,
  val_source,
  val_learner,
  val_every,
  val_episodes,
  on_nonfinite,
  keep_best,
) -> None:
  """Raises ValueError, naming the argument, before anything is done."""
  for name, value, low in (
    ("num_steps", num_steps, 0),
    ("meta_batch_size", meta_batch_size, 1),
    ("checkpoint_every", checkpoint_every, 1),
    ("log_every", log_every, 1),
    ("val_every", val_every, 0),
    ("val_episodes", val_episodes, 1),
  ):
    if not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
  if on_nonfinite not in ("raise", "skip"):
    raise ValueError(
      f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}."
    )
  if keep_best:
    missing = [
      name
      for name, given in (
        ("workdir", workdir is not None),
        ("val_source", val_source is not None),
        ("val_every > 0", val_every > 0),
      )
      if not given
    ]
    if missing:
      raise ValueError(
        "keep_best needs validation and a place to keep the "
        f"best state: give {' and '.join(missing)}."
      )
    metric = (val_learner or learner).metric_name
    if metric not in best_lib.HIGHER_IS_BETTER:
      raise ValueError(
        f"keep_best: no order for the validation metric "
        f"{metric!r}; known: {sorted(best_lib.HIGHER_IS_BETTER)}."
      )


def _initial_state(
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


def _batches(
  source: TaskSource, seed: int, start: int, stop: int, tasks: int
) -> Iterator[Episode]:
  """This process's `tasks` tasks of each step (`parallel.process_rng`)."""
  for step in range(start, stop):
    yield source.sample_batch(parallel.process_rng(seed, step), tasks)


def _check_labels(learner: Learner, meta_params, batch: Episode) -> None:
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


def _compile_ahead(
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
  _check_labels(learner, state.meta_params, first_host)
  first = parallel.put_batch(first_host, mesh)
  compiled = meta_step.lower(state, first, key).compile()
  if check_memory:
    check_step_fits(compiled, jax.local_devices()[0])
  return compiled, itertools.chain([first_host], host_batches)


def _last_checkpoint(checkpointer) -> str:
  step = checkpointer.latest_step() if checkpointer is not None else None
  if step is None:
    return "There is no checkpoint to resume from."
  return f"The last checkpoint, kept, is step {step}."


def _take_step(
  meta_step: Callable,
  state: TrainState,
  batch: Episode,
  key: jax.Array,
  *,
  step: int,
  on_nonfinite: str,
  log: bool,
  writer,
  checkpointer,
):
  """One meta-step under the non-finite policy: (state, the step's metrics).

  `step` is the number of steps done after it. A step whose loss or gradient
  norm is not finite goes to metrics.jsonl with "nonfinite": 1, then raises
  `NonFiniteError` ("raise") or is dropped ("skip": the state before it,
  counted as done). The others' metrics are written where `log`.
  """
  previous = jax.tree.map(jnp.copy, state) if on_nonfinite == "skip" else None
  state, metrics = meta_step(state, batch, key)
  metrics = jax.device_get(metrics)
  shown = {k: float(v) for k, v in metrics.items()}
  bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
  if not bad:
    if writer is not None and log:
      writer.write(step, {f"train/{k}": v for k, v in metrics.items()})
    return state, shown
  if writer is not None:
    writer.write(step, {**metrics, "nonfinite": 1.0})
  if on_nonfinite == "raise":
    raise NonFiniteError(
      f"Non-finite {' and '.join(bad)} at step {step} "
      f"({', '.join(f'{k}={metrics[k]}' for k in bad)}). "
      f"{_last_checkpoint(checkpointer)} Pass on_nonfinite='skip' "
      "(config.on_nonfinite) to drop such steps instead."
    )
  # The step counts as done (a resume goes on after it), with no update.
  assert previous is not None  # on_nonfinite == "skip"
  return previous._replace(step=previous.step + 1), {**shown, "nonfinite": 1.0}


def _validate(
  learner: Learner,
  state: TrainState,
  source: TaskSource,
  *,
  episodes: int,
  seed: int,
  eval_step: Callable,
  step: int,
  writer,
  best: Optional[best_lib.BestKeeper],
) -> Dict[str, float]:
  """Validates `state`, writes and returns {"val/<metric>", its "_ci95"}.

  The episodes come from `seed + 1` (the same at every validation), and the
  state is offered to `best`.
  """
  result = evaluate(
    learner,
    parallel.local_copy(state.meta_params),
    source,
    episodes=episodes,
    seed=seed + 1,
    eval_step=eval_step,
  )
  values = {
    f"val/{result.metric}": result.mean,
    f"val/{result.metric}_ci95": result.ci95,
  }
  if writer is not None:
    writer.write(step, values)
  if best is not None:
    best.offer(step, state, result)
  return values


@jax.jit
def _count_nonfinite(leaves) -> jax.Array:
  """The number of NaN or infinite entries of a list of arrays (one program,
  not three small ones per leaf shape)."""
  return jnp.asarray(sum(jnp.sum(~jnp.isfinite(x)) for x in leaves))


def _save_checkpoint(
  checkpointer, step: int, state: TrainState, writer
) -> None:
  """Saves `state`; non-finite meta-parameters raise `NonFiniteError` instead.

  Finite gradients can still give an update that overflowed; such a state is
  never saved, so the last checkpoint stays one to resume from.
  """
  leaves = jax.tree.leaves(state.meta_params)
  nonfinite = int(_count_nonfinite(leaves))
  if nonfinite:
    if writer is not None:
      writer.write(step, {"nonfinite_meta_params": nonfinite, "nonfinite": 1.0})
    raise NonFiniteError(
      f"Non-finite meta_params at step {step} ({nonfinite} of "
      f"{sum(x.size for x in leaves)} entries are NaN or inf), not "
      f"saved. {_last_checkpoint(checkpointer)}"
    )
  del leaves
  checkpointer.save(step, state)


def meta_train(
  learner: Learner,
  source: TaskSource,
  *,
  outer_opt: optax.GradientTransformation,
  num_steps: int,
  meta_batch_size: int,
  seed: int = 0,
  workdir: Optional[str] = None,
  checkpoint_every: int = 1000,
  log_every: int = 100,
  val_source: Optional[TaskSource] = None,
  val_learner: Optional[Learner] = None,
  val_every: int = 0,
  val_episodes: int = 100,
  callback: Optional[Callback] = None,
  on_nonfinite: str = "raise",
  initial_state: Optional[TrainState] = None,
  mesh: Optional[Mesh] = None,
  tasks_per_chunk: Optional[int] = None,
  check_memory: bool = True,
  keep_best: bool = False,
) -> TrainState:
  """Meta-trains `learner` on tasks from `source`; returns the final state.

  Every step's episodes and key are pure functions of (seed, step), so with a
  `workdir` the run resumes from its latest checkpoint and ends with the same
  parameters as an uninterrupted run.

  Before the first step the first batch's class labels are checked against
  the learner's outputs (0..N-1), and the step is compiled and its memory
  checked, so that nothing is written for a run that cannot work. With
  `num_steps=0` and a `workdir`, the initial state is saved as step 0.

  Args:
    learner: the learner to meta-train.
    source: meta-training task source (`sample_batch(rng, size)`).
    outer_opt: the outer (meta) optimizer.
    num_steps: total meta-steps (including any already done in `workdir`).
    meta_batch_size: tasks per meta-step.
    seed: the run's seed (initialization, episodes, keys).
    workdir: folder for checkpoints (`checkpoints/`) and metrics
      (`metrics.jsonl`, `tensorboard/`); None trains in memory only.
    checkpoint_every: save every this many steps (and at the end).
    log_every: write training metrics every this many steps.
    val_source: meta-validation task source (classes unseen in training).
    val_learner: learner to validate with (default `learner`), e.g. one built
      with the test-time number of inner steps.
    val_every: validate every this many steps (0: never).
    val_episodes: episodes per validation.
    callback: called after each step that completes (after its validation
      and checkpoint), as `callback(step, metrics)`: `step` is the number of
      steps done, as in `metrics.jsonl`, and `metrics` a dict of floats, the
      step's "loss", the learner's metric (e.g. "accuracy") and "grad_norm";
      on a validation step also "val/<metric>" and "val/<metric>_ci95"; on a
      step dropped by on_nonfinite="skip" also "nonfinite": 1.0. A resumed
      run's first call is for the step after its checkpoint. Every process
      calls it. This is how a caller shows progress (the library prints
      nothing): a tqdm bar can advance to `step`, show the training metrics
      and write the validation ones (`experiments/progress.py`).
    on_nonfinite: "raise" stops at the first non-finite loss or gradient norm
      (the last checkpoint is kept) with a `NonFiniteError` naming the step
      and the quantity; "skip" drops that step's update and goes on. Either
      way the step's metrics go to `metrics.jsonl` with "nonfinite": 1. Non-
      finite meta-parameters at a checkpoint step (an update that overflowed)
      are never saved: `NonFiniteError` in both modes.
    initial_state: start from this state (e.g. the end of an earlier phase
      with another learner over the same meta-parameters) instead of a fresh
      initialization; a checkpoint in `workdir` still takes precedence. Its
      arrays are donated to the first step: pass copies of any you use later.
    mesh: devices to shard the meta-batch's tasks over (data parallel: each
      device adapts its share of the tasks, the meta-gradient is averaged
      over all, the state is replicated); default `parallel.task_mesh()`,
      every device. `meta_batch_size` must divide by its size. With several
      processes (`parallel.initialize_distributed`) every process calls
      `meta_train` alike; each samples its share of the tasks from its own
      stream (`parallel.process_rng`), and only process 0 writes metrics.
    tasks_per_chunk: tasks each device adapts at once (see
      `step.make_meta_step`); None: automatic (1 on CPU, the whole share on
      accelerators).
    check_memory: before the first step, compare XLA's estimate of the
      step's memory with the device's free memory and raise
      `StepMemoryError` (nothing trained, nothing written) if it will not
      fit.
    keep_best: keep the state of the best validation so far (highest
      accuracy, lowest MSE) in `<workdir>/best`, and its step and value in
      `<workdir>/best.json` (`best.read_best`), written after the checkpoint, so
      a crash leaves the two consistent. It is early stopping without the
      stopping: training runs all `num_steps`, and the caller chooses which
      state to use (`runs` evaluates the best one with
      `config.select_on_validation`). A resumed run keeps the best of the
      steps before the crash. Needs `workdir`, `val_source` and `val_every`.

  Returns:
    The final `TrainState`.
  """
  _check_arguments(
    learner,
    num_steps=num_steps,
    meta_batch_size=meta_batch_size,
    seed=seed,
    workdir=workdir,
    checkpoint_every=checkpoint_every,
    log_every=log_every,
    val_source=val_source,
    val_learner=val_learner,
    val_every=val_every,
    val_episodes=val_episodes,
    on_nonfinite=on_nonfinite,
    keep_best=keep_best,
  )
  mesh = mesh if mesh is not None else parallel.task_mesh()
  local_tasks = parallel.check_meta_batch_size(meta_batch_size, mesh)
  train_key = seed_keys(seed)[1]
  state = _initial_state(learner, outer_opt, source, seed, initial_state, mesh)
  meta_step = make_meta_step(
    learner, outer_opt, mesh=mesh, tasks_per_chunk=tasks_per_chunk
  )
  val_learner = val_learner or learner
  val_step = make_eval_step(val_learner) if val_source is not None else None
  primary = jax.process_index() == 0

  with contextlib.ExitStack() as stack:  # closes what is opened, come what may
    checkpointer = restored_step = best = writer = None
    if workdir is not None:
      # orbax is imported for runs kept in a workdir only.
      from metajax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top

      checkpointer = ckpt_lib.Checkpointer(workdir)
      stack.callback(checkpointer.close)
      restored_step, state = checkpointer.restore(state)
    start = int(state.step)
    host_batches = _batches(source, seed, start, num_steps, local_tasks)
    if start < num_steps:
      meta_step, host_batches = _compile_ahead(
        meta_step,
        learner,
        state,
        host_batches,
        jax.random.fold_in(train_key, start),
        mesh,
        check_memory,
      )
    if keep_best:
      assert workdir is not None  # _check_arguments: keep_best needs one
      best = best_lib.BestKeeper(workdir, primary)
      stack.callback(best.close)
    if workdir is not None and primary:
      writer = metrics_io.MetricWriter(
        workdir, resume_step=start if restored_step is not None else None
      )
      stack.callback(writer.close)
    if checkpointer is not None and restored_step is None and num_steps == 0:
      # Nothing to train: the initial state is the run (load_run reads it).
      _save_checkpoint(checkpointer, 0, state, writer)

    batches = prefetch_to_device(
      host_batches, put=lambda b: parallel.put_batch(b, mesh)
    )
    for step, batch in zip(range(start, num_steps), batches):
      done = step + 1
      state, metrics = _take_step(
        meta_step,
        state,
        batch,
        jax.random.fold_in(train_key, step),
        step=done,
        on_nonfinite=on_nonfinite,
        writer=writer,
        checkpointer=checkpointer,
        log=done % log_every == 0 or done == num_steps,
      )
      if (
        val_step is not None
        and val_source is not None
        and val_every
        and done % val_every == 0
      ):
        metrics.update(
          _validate(
            val_learner,
            state,
            val_source,
            episodes=val_episodes,
            seed=seed,
            eval_step=val_step,
            step=done,
            writer=writer,
            best=best,
          )
        )
      if checkpointer is not None and (
        done % checkpoint_every == 0 or done == num_steps
      ):
        _save_checkpoint(checkpointer, done, state, writer)
      if callback is not None:
        callback(done, metrics)
  return state
