"""The meta-training loop, around the one jitted meta-step of `step`.

`meta_train` is built from small parts, in the order a run meets them: what
comes before the first step is `_train_setup`'s (argument checks, the initial
state, the restore, the step compiled ahead, its memory checked); then per
step the non-finite policy, validation (and the best state), the checkpoint
and the caller's callback.
"""

import contextlib
import math
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from metajax import _train_setup as setup
from metajax import best as best_lib
from metajax import parallel
from metajax._train_setup import Callback
from metajax.data.episodes import TaskSource, prefetch_to_device
from metajax.evaluate import evaluate
from metajax.step import TrainState
from metajax.types import Episode, Learner


class NonFiniteError(FloatingPointError):
  """Raised when the meta-loss or meta-gradient stops being finite."""


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


def _train_steps(
  state: TrainState, run: setup.Start, options: setup.Options
) -> TrainState:
  """Takes the steps from `state` to `options.num_steps`, each followed by its
  validation, checkpoint and callback; returns the final state."""
  num_steps = options.num_steps
  checkpointer, writer = run.checkpointer, run.writer
  if checkpointer is not None and not run.restored and num_steps == 0:
    # Nothing to train: the initial state is the run (load_run reads it).
    _save_checkpoint(checkpointer, 0, state, writer)

  batches = prefetch_to_device(
    run.host_batches, put=lambda b: parallel.put_batch(b, run.mesh)
  )
  for step, batch in zip(range(int(state.step), num_steps), batches):
    done = step + 1
    state, metrics = _take_step(
      run.meta_step,
      state,
      batch,
      jax.random.fold_in(run.train_key, step),
      step=done,
      on_nonfinite=options.on_nonfinite,
      writer=writer,
      checkpointer=checkpointer,
      log=done % options.log_every == 0 or done == num_steps,
    )
    if (
      run.val_step is not None
      and options.val_source is not None
      and options.val_every
      and (done % options.val_every == 0 or done == num_steps)
    ):
      metrics.update(
        _validate(
          run.val_learner,
          state,
          options.val_source,
          episodes=options.val_episodes,
          seed=options.seed,
          eval_step=run.val_step,
          step=done,
          writer=writer,
          best=run.best,
        )
      )
    if checkpointer is not None and (
      done % options.checkpoint_every == 0 or done == num_steps
    ):
      _save_checkpoint(checkpointer, done, state, writer)
    if options.callback is not None:
      options.callback(done, metrics)
  return state


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
    val_every: validate every this many steps and after the last (0: never).
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
  options = setup.Options(
    outer_opt=outer_opt,
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
    callback=callback,
    on_nonfinite=on_nonfinite,
    initial_state=initial_state,
    mesh=mesh,
    tasks_per_chunk=tasks_per_chunk,
    check_memory=check_memory,
    keep_best=keep_best,
  )
  setup.check_arguments(learner, options)
  with contextlib.ExitStack() as stack:  # closes what is opened, come what may
    state, run = setup.start(stack, learner, source, options)
    return _train_steps(state, run, options)
