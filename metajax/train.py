"""The generic meta-trainer: one jitted meta-step for every learner, and the loop.

A meta-step is: for each task of the meta-batch (vmapped), adapt on the support
set, predict the queries, take the query loss; average; differentiate with
respect to the meta-parameters; apply an optax outer optimizer.
"""

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax import checkpoint as ckpt_lib
from metajax import metrics_io
from metajax.data.episodes import TaskSource, prefetch_to_device, step_rng
from metajax.evaluate import evaluate, make_eval_step, task_metrics, vmap_tasks
from metajax.types import Episode, Learner, Params


class TrainState(NamedTuple):
  step: jax.Array            # [] int32, meta-steps done (skipped ones too)
  meta_params: Params        # the learner's meta-parameters
  opt_state: optax.OptState  # the outer optimizer's state


class NonFiniteError(FloatingPointError):
  """Raised when the meta-loss or meta-gradient stops being finite."""


def seed_keys(seed: int):
  """(init_key, train_key) derived from the run's seed."""
  return tuple(jax.random.split(jax.random.key(seed)))


def meta_loss(learner: Learner, meta_params: Params, batch: Episode,
              key: jax.Array):
  """Mean training objective over a meta-batch; aux: mean metric.

  The objective is the query loss after adaptation, or the learner's own
  `task_loss` where it has one.
  """
  if learner.task_loss is None:
    task_losses, task_metric = task_metrics(learner, meta_params, batch, key)
  else:
    task_losses, task_metric = vmap_tasks(
        lambda ep, k: learner.task_loss(meta_params, ep, k), batch, key)
  return task_losses.mean(), task_metric.mean()


def meta_gradient(learner: Learner, meta_params: Params, batch: Episode,
                  key: jax.Array):
  """((loss, metric), outer gradient) of a meta-batch, averaged over tasks."""
  if learner.outer_grad is None:
    return jax.value_and_grad(
        lambda p: meta_loss(learner, p, batch, key), has_aux=True)(meta_params)
  grads, (task_losses, task_metric) = vmap_tasks(
      lambda ep, k: learner.outer_grad(meta_params, ep, k), batch, key)
  grads = jax.tree.map(lambda g: g.mean(axis=0), grads)
  return (task_losses.mean(), task_metric.mean()), grads


def init_train_state(learner: Learner, outer_opt: optax.GradientTransformation,
                     key: jax.Array, example_batch: Episode) -> TrainState:
  """Initial meta-parameters (from one task of `example_batch`) and opt state."""
  example = jax.tree.map(lambda a: a[0], example_batch)
  meta_params = learner.init(key, example)
  return TrainState(step=jnp.zeros([], jnp.int32), meta_params=meta_params,
                    opt_state=outer_opt.init(meta_params))


def make_meta_step(learner: Learner, outer_opt: optax.GradientTransformation
                   ) -> Callable:
  """A jitted `step(state, batch, key) -> (state, metrics)`.

  `metrics` holds the meta-batch's mean query "loss", the learner's metric
  (e.g. "accuracy") and "grad_norm". The input state's buffers are donated.
  """

  def step(state: TrainState, batch: Episode, key: jax.Array):
    (loss, metric), grads = meta_gradient(learner, state.meta_params, batch,
                                          key)
    updates, opt_state = outer_opt.update(grads, state.opt_state,
                                          state.meta_params)
    meta_params = optax.apply_updates(state.meta_params, updates)
    metrics = {"loss": loss, learner.metric_name: metric,
               "grad_norm": optax.tree.norm(grads)}
    return TrainState(state.step + 1, meta_params, opt_state), metrics

  return jax.jit(step, donate_argnums=0)


@jax.jit
def _count_nonfinite(leaves) -> jax.Array:
  """The number of NaN or infinite entries of a list of arrays (one program,
  not three small ones per leaf shape)."""
  return sum(jnp.sum(~jnp.isfinite(x)) for x in leaves)


def _batches(source: TaskSource, seed: int, start: int, stop: int,
             meta_batch_size: int):
  for step in range(start, stop):
    yield source.sample_batch(step_rng(seed, step), meta_batch_size)


def _last_checkpoint(checkpointer) -> str:
  step = checkpointer.latest_step() if checkpointer is not None else None
  if step is None:
    return "There is no checkpoint to resume from."
  return f"The last checkpoint, kept, is step {step}."


def meta_train(learner: Learner, source: TaskSource, *,
          outer_opt: optax.GradientTransformation, num_steps: int,
          meta_batch_size: int, seed: int = 0, workdir: Optional[str] = None,
          checkpoint_every: int = 1000, log_every: int = 100,
          val_source: Optional[TaskSource] = None,
          val_learner: Optional[Learner] = None, val_every: int = 0,
          val_episodes: int = 100, progress: bool = False,
          on_nonfinite: str = "raise",
          initial_state: Optional[TrainState] = None) -> TrainState:
  """Meta-trains `learner` on tasks from `source`; returns the final state.

  Every step's episodes and key are pure functions of (seed, step), so with a
  `workdir` the run resumes from its latest checkpoint and ends with the same
  parameters as an uninterrupted run.

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
    progress: show a tqdm progress bar (on stderr).
    on_nonfinite: "raise" stops at the first non-finite loss or gradient norm
      (the last checkpoint is kept) with a `NonFiniteError` naming the step
      and the quantity; "skip" drops that step's update and goes on. Either
      way the step's metrics go to `metrics.jsonl` with "nonfinite": 1. Non-
      finite meta-parameters at a checkpoint step (an update that overflowed)
      are never saved: `NonFiniteError` in both modes.
    initial_state: start from this state (e.g. the end of an earlier phase
      with another learner over the same meta-parameters) instead of a fresh
      initialization; a checkpoint in `workdir` still takes precedence.

  Returns:
    The final `TrainState`.
  """
  for name, value, low in (("num_steps", num_steps, 0),
                           ("meta_batch_size", meta_batch_size, 1),
                           ("checkpoint_every", checkpoint_every, 1),
                           ("log_every", log_every, 1),
                           ("val_every", val_every, 0),
                           ("val_episodes", val_episodes, 1)):
    if not isinstance(value, (int, np.integer)) or value < low:
      raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
  if on_nonfinite not in ("raise", "skip"):
    raise ValueError(f"on_nonfinite must be 'raise' or 'skip', got {on_nonfinite!r}.")

  init_key, train_key = seed_keys(seed)
  if initial_state is None:
    # Jitted: an un-jitted conv4 init runs op by op and takes seconds.
    example = source.sample_batch(step_rng(seed, 0), 1)
    state = jax.jit(lambda k, ex: init_train_state(learner, outer_opt, k, ex))(
        init_key, example)
  else:
    state = initial_state
  # Committed to the device, as the step's outputs are: otherwise the second
  # step sees other input shardings and compiles the meta-step again.
  state = jax.device_put(state, jax.local_devices()[0])
  meta_step = make_meta_step(learner, outer_opt)
  val_learner = val_learner or learner
  val_step = make_eval_step(val_learner) if val_source is not None else None

  checkpointer = writer = None
  if workdir is not None:
    checkpointer = ckpt_lib.Checkpointer(workdir)
    try:
      restored_step, state = checkpointer.restore(state)
    except BaseException:
      checkpointer.close()
      raise
    start = int(state.step)
    writer = metrics_io.MetricWriter(
        workdir, resume_step=start if restored_step is not None else None)
  else:
    start = int(state.step)

  bar = None
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm.tqdm(total=num_steps, initial=start, dynamic_ncols=True)

  try:
    batches = prefetch_to_device(
        _batches(source, seed, start, num_steps, meta_batch_size))
    for step, batch in zip(range(start, num_steps), batches):
      previous = jax.tree.map(jnp.copy, state) if on_nonfinite == "skip" else None
      state, metrics = meta_step(state, batch, jax.random.fold_in(train_key, step))
      done = step + 1
      metrics = jax.device_get(metrics)
      bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
      if bar is not None:
        bar.update(1)
      if bad:
        if writer is not None:
          writer.write(done, {**metrics, "nonfinite": 1.0})
        if on_nonfinite == "raise":
          raise NonFiniteError(
              f"Non-finite {' and '.join(bad)} at step {done} "
              f"({', '.join(f'{k}={metrics[k]}' for k in bad)}). "
              f"{_last_checkpoint(checkpointer)} Pass on_nonfinite='skip' "
              "(config.on_nonfinite) to drop such steps instead.")
        # The step counts as done (a resume goes on after it), with no update.
        state = previous._replace(step=previous.step + 1)
      else:
        if bar is not None:
          bar.set_postfix({k: f"{v:.4f}" for k, v in metrics.items()},
                          refresh=False)
        if writer is not None and (done % log_every == 0 or done == num_steps):
          writer.write(done, {f"train/{k}": v for k, v in metrics.items()})
      if val_step is not None and val_every and done % val_every == 0:
        result = evaluate(val_learner, state.meta_params, val_source,
                          episodes=val_episodes, seed=seed + 1,
                          eval_step=val_step)
        if writer is not None:
          writer.write(done, {f"val/{result.metric}": result.mean,
                              f"val/{result.metric}_ci95": result.ci95})
        if bar is not None:
          bar.write(f"step {done}: val {result.metric} {result.mean:.4f} "
                    f"+- {result.ci95:.4f}")
      if checkpointer is not None and (done % checkpoint_every == 0
                                       or done == num_steps):
        leaves = jax.tree.leaves(state.meta_params)
        nonfinite = int(_count_nonfinite(leaves))
        if nonfinite:  # finite gradients, but an update that overflowed
          writer.write(done, {"nonfinite_meta_params": nonfinite,
                              "nonfinite": 1.0})
          raise NonFiniteError(
              f"Non-finite meta_params at step {done} ({nonfinite} of "
              f"{sum(x.size for x in leaves)} entries are NaN or inf), not "
              f"saved. {_last_checkpoint(checkpointer)}")
        del leaves
        checkpointer.save(done, state)
  finally:
    if bar is not None:
      bar.close()
    if checkpointer is not None:
      checkpointer.close()
    if writer is not None:
      writer.close()
  return state
