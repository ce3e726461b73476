"""The generic meta-trainer: one jitted meta-step for every learner, and the loop.

A meta-step is: for each task of the meta-batch (vmapped), adapt on the support
set, predict the queries, take the query loss; average; differentiate with
respect to the meta-parameters; apply an optax outer optimizer.
"""

import itertools
import json
import math
import os
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from metajax import checkpoint as ckpt_lib
from metajax import metrics_io
from metajax import parallel
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
              key: jax.Array, *, split: bool = True):
  """Mean training objective over a meta-batch; aux: mean metric.

  The objective is the query loss after adaptation, or the learner's own
  `task_loss` where it has one. `key` is split into one key per task
  (`split=False`: it already is, [T] keys).
  """
  if learner.task_loss is None:
    task_losses, task_metric = task_metrics(learner, meta_params, batch, key,
                                            split=split)
  else:
    task_losses, task_metric = vmap_tasks(
        lambda ep, k: learner.task_loss(meta_params, ep, k), batch, key,
        split=split)
  return task_losses.mean(), task_metric.mean()


def meta_gradient(learner: Learner, meta_params: Params, batch: Episode,
                  key: jax.Array, num_chunks: int = 1):
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
    raise ValueError(f"num_chunks must be a positive integer that divides the "
                     f"{tasks} tasks of the meta-batch, got {num_chunks!r}.")
  keys = jax.random.split(key, tasks)

  def grads_of(chunk, chunk_keys):
    if learner.outer_grad is None:
      return jax.value_and_grad(
          lambda p: meta_loss(learner, p, chunk, chunk_keys, split=False),
          has_aux=True)(meta_params)
    grads, (task_losses, task_metric) = vmap_tasks(
        lambda ep, k: learner.outer_grad(meta_params, ep, k), chunk,
        chunk_keys, split=False)
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
      body, jax.tree.map(jnp.zeros_like, meta_params),
      (jax.tree.map(split, batch), split(keys)))
  return ((losses.mean(), metrics.mean()),
          jax.tree.map(lambda t: t / num_chunks, total))


def init_train_state(learner: Learner, outer_opt: optax.GradientTransformation,
                     key: jax.Array, example_batch: Episode) -> TrainState:
  """Initial meta-parameters (from one task of `example_batch`) and opt state."""
  example = jax.tree.map(lambda a: a[0], example_batch)
  meta_params = learner.init(key, example)
  return TrainState(step=jnp.zeros([], jnp.int32), meta_params=meta_params,
                    opt_state=outer_opt.init(meta_params))


def auto_tasks_per_chunk(platform: str) -> Optional[int]:
  """The default chunk: 1 task at a time on CPU, all at once elsewhere.

  Measured on the 2-core CPU machine (conv4 Omniglot meta-step, meta-batch
  32, interleaved in one process): MAML 807 against 1164 ms per step with all
  32 tasks vmapped, first-order MAML 566 / 843, Reptile 223 / 426, ProtoNets
  685 / 961, Matching Nets 593 / 911, SNAIL 1003 / 996; one task's
  activations stay in cache, and peak memory falls by half (README,
  Benchmark). On GPUs and TPUs the vmapped tasks are what fills the device.
  """
  return 1 if platform == "cpu" else None


def make_meta_step(learner: Learner, outer_opt: optax.GradientTransformation,
                   *, mesh: Optional[Mesh] = None,
                   tasks_per_chunk: Optional[int] = None) -> Callable:
  """A jitted `step(state, batch, key) -> (state, metrics)`.

  `metrics` holds the meta-batch's mean query "loss", the learner's metric
  (e.g. "accuracy") and "grad_norm". The input state's buffers are donated.

  Args:
    learner: the learner.
    outer_opt: the outer optimizer.
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
  devices = 1 if mesh is None else mesh.devices.size
  platform = (jax.default_backend() if mesh is None
              else mesh.devices.flat[0].platform)
  chunk = (auto_tasks_per_chunk(platform) if tasks_per_chunk is None
           else tasks_per_chunk)

  def step(state: TrainState, batch: Episode, key: jax.Array):
    num_chunks = 1
    if chunk is not None:
      tasks = jax.tree.leaves(batch)[0].shape[0]
      per_device = tasks // devices
      if (not isinstance(chunk, (int, np.integer))
          or chunk < 1 or per_device % chunk):
        raise ValueError(
            f"tasks_per_chunk must be a positive integer that divides the "
            f"{per_device} tasks per device ({tasks} tasks over {devices} "
            f"devices), got {chunk!r}.")
      num_chunks = per_device // int(chunk)
    (loss, metric), grads = meta_gradient(learner, state.meta_params, batch,
                                          key, num_chunks)
    updates, opt_state = outer_opt.update(grads, state.opt_state,
                                          state.meta_params)
    meta_params = optax.apply_updates(state.meta_params, updates)
    metrics = {"loss": loss, learner.metric_name: metric,
               "grad_norm": optax.tree.norm(grads)}
    return TrainState(state.step + 1, meta_params, opt_state), metrics

  if mesh is None:
    return jax.jit(step, donate_argnums=0)
  whole = parallel.replicated(mesh)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(whole, parallel.task_sharding(mesh), whole),
                 out_shardings=(whole, whole))


class StepMemoryError(MemoryError):
  """The compiled meta-step needs more memory than the device has free."""


def available_memory_bytes(device: jax.Device) -> Optional[int]:
  """Free memory of `device` in bytes, or None where it cannot be told.

  Accelerators report their allocator's limit and use; for the CPU it is the
  machine's MemAvailable (/proc/meminfo).
  """
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  if device.platform == "cpu":
    try:
      with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
          if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    except OSError:
      pass
  return None


def step_memory_bytes(compiled) -> Optional[int]:
  """XLA's estimate of the memory a compiled step allocates per device.

  Temporaries plus outputs, less outputs that reuse (donated) inputs; the
  inputs themselves are already allocated. None if XLA gives no analysis.
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  return int(stats.temp_size_in_bytes + stats.output_size_in_bytes
             - stats.alias_size_in_bytes)


def check_step_fits(compiled, device: jax.Device,
                    available: Optional[int] = None) -> Optional[int]:
  """Raises `StepMemoryError` if the compiled step will not fit on `device`.

  Args:
    compiled: a compiled meta-step (`make_meta_step(...).lower(...).compile()`).
    device: where it runs (each device of a mesh runs the same share).
    available: free bytes (default: `available_memory_bytes(device)`).

  Returns:
    The step's estimated bytes (None when XLA or the device tells nothing, in
    which case nothing is checked).
  """
  needed = step_memory_bytes(compiled)
  if available is None:
    available = available_memory_bytes(device)
  if needed is not None and available is not None and needed > available:
    raise StepMemoryError(
        f"The meta-step needs about {needed / 2**20:.0f} MB on {device} "
        f"(XLA's estimate for the compiled step: temporaries and outputs) but "
        f"only {available / 2**20:.0f} MB are free. Process the meta-batch in "
        "chunks (tasks_per_chunk, config.tasks_per_chunk), lower "
        "meta_batch_size, shard it over more devices, or for many inner "
        "steps rematerialize them (remat=True).")
  return needed


@jax.jit
def _count_nonfinite(leaves) -> jax.Array:
  """The number of NaN or infinite entries of a list of arrays (one program,
  not three small ones per leaf shape)."""
  return sum(jnp.sum(~jnp.isfinite(x)) for x in leaves)


def _batches(source: TaskSource, seed: int, start: int, stop: int,
             tasks: int):
  """This process's `tasks` tasks of each step (`parallel.process_rng`)."""
  for step in range(start, stop):
    yield source.sample_batch(parallel.process_rng(seed, step), tasks)


def _last_checkpoint(checkpointer) -> str:
  step = checkpointer.latest_step() if checkpointer is not None else None
  if step is None:
    return "There is no checkpoint to resume from."
  return f"The last checkpoint, kept, is step {step}."


# Validation metrics, and whether a higher value is better.
HIGHER_IS_BETTER = {"accuracy": True, "mse": False}
BEST_FOLDER = "best"  # <workdir>/best: checkpoints of the best validation
BEST_JSON = "best.json"  # <workdir>/best.json: which step, and its value


def read_best(workdir: str) -> Optional[dict]:
  """The best validation so far of the run in `workdir` (`keep_best`), or None.

  A dict with "step" (the checkpoint in `<workdir>/best` that holds it),
  "metric", "mean" and "ci95".
  """
  path = os.path.join(workdir, BEST_JSON)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _improves(metric: str, new: float, old: float) -> bool:
  """Strictly better (a tie keeps the earlier step)."""
  return new > old if HIGHER_IS_BETTER[metric] else new < old


def meta_train(learner: Learner, source: TaskSource, *,
          outer_opt: optax.GradientTransformation, num_steps: int,
          meta_batch_size: int, seed: int = 0, workdir: Optional[str] = None,
          checkpoint_every: int = 1000, log_every: int = 100,
          val_source: Optional[TaskSource] = None,
          val_learner: Optional[Learner] = None, val_every: int = 0,
          val_episodes: int = 100, progress: bool = False,
          on_nonfinite: str = "raise",
          initial_state: Optional[TrainState] = None,
          mesh: Optional[Mesh] = None,
          tasks_per_chunk: Optional[int] = None,
          check_memory: bool = True, keep_best: bool = False) -> TrainState:
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
      initialization; a checkpoint in `workdir` still takes precedence. Its
      arrays are donated to the first step: pass copies of any you use later.
    mesh: devices to shard the meta-batch's tasks over (data parallel: each
      device adapts its share of the tasks, the meta-gradient is averaged
      over all, the state is replicated); default `parallel.task_mesh()`,
      every device. `meta_batch_size` must divide by its size. With several
      processes (`parallel.initialize_distributed`) every process calls
      `meta_train` alike; each samples its share of the tasks from its own
      stream (`parallel.process_rng`), and only process 0 writes metrics.
    tasks_per_chunk: tasks each device adapts at once (see `make_meta_step`);
      None: automatic (1 on CPU, the whole share on accelerators).
    check_memory: before the first step, compare XLA's estimate of the
      step's memory with the device's free memory and raise
      `StepMemoryError` (nothing trained, nothing written) if it will not
      fit.
    keep_best: keep the state of the best validation so far (highest
      accuracy, lowest MSE) in `<workdir>/best`, and its step and value in
      `<workdir>/best.json` (`read_best`), written after the checkpoint, so
      a crash leaves the two consistent. It is early stopping without the
      stopping: training runs all `num_steps`, and the caller chooses which
      state to use (`runs` evaluates the best one with
      `config.select_on_validation`). A resumed run keeps the best of the
      steps before the crash. Needs `workdir`, `val_source` and `val_every`.

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
  if keep_best:
    missing = [name for name, given in (
        ("workdir", workdir is not None), ("val_source", val_source is not None),
        ("val_every > 0", val_every > 0)) if not given]
    if missing:
      raise ValueError("keep_best needs validation and a place to keep the "
                       f"best state: give {' and '.join(missing)}.")
    metric = (val_learner or learner).metric_name
    if metric not in HIGHER_IS_BETTER:
      raise ValueError(f"keep_best: no order for the validation metric "
                       f"{metric!r}; known: {sorted(HIGHER_IS_BETTER)}.")
  mesh = mesh if mesh is not None else parallel.task_mesh()
  local_tasks = parallel.check_meta_batch_size(meta_batch_size, mesh)

  init_key, train_key = seed_keys(seed)
  if initial_state is None:
    # Jitted: an un-jitted conv4 init runs op by op and takes seconds.
    example = source.sample_batch(step_rng(seed, 0), 1)
    state = jax.jit(lambda k, ex: init_train_state(learner, outer_opt, k, ex))(
        init_key, example)
  else:
    state = initial_state
  # Replicated over the mesh (committed), as the step's outputs are:
  # otherwise the second step sees other input shardings and compiles again.
  state = parallel.put_replicated(state, mesh)
  meta_step = make_meta_step(learner, outer_opt, mesh=mesh,
                             tasks_per_chunk=tasks_per_chunk)
  val_learner = val_learner or learner
  val_step = make_eval_step(val_learner) if val_source is not None else None
  primary = jax.process_index() == 0

  checkpointer = writer = best_checkpointer = best = None
  if workdir is not None:
    checkpointer = ckpt_lib.Checkpointer(workdir)
    try:
      restored_step, state = checkpointer.restore(state)
    except BaseException:
      checkpointer.close()
      raise
    start = int(state.step)
  else:
    restored_step, start = None, int(state.step)

  host_batches = _batches(source, seed, start, num_steps, local_tasks)
  if start < num_steps:
    # Compiled ahead of the loop, to check its memory before any step, on
    # the first step's batch (which the loop then uses, not sampled again).
    first_host = next(host_batches)
    host_batches = itertools.chain([first_host], host_batches)
    first = parallel.put_batch(first_host, mesh)
    try:
      meta_step = meta_step.lower(
          state, first, jax.random.fold_in(train_key, start)).compile()
      if check_memory:
        check_step_fits(meta_step, jax.local_devices()[0])
    except BaseException:
      if checkpointer is not None:
        checkpointer.close()
      raise
    del first
  if keep_best:
    best = read_best(workdir)
    # best.json is written after its checkpoint: a crash in between leaves a
    # newer checkpoint it does not name, dropped here. Two are kept, so the
    # one it names survives a crash during the next save.
    best_checkpointer = ckpt_lib.Checkpointer(workdir, max_to_keep=2,
                                              folder=BEST_FOLDER)
    for saved in best_checkpointer.all_steps():
      if best is None or saved != best["step"]:
        best_checkpointer.delete(saved)
  if workdir is not None and primary:
    writer = metrics_io.MetricWriter(
        workdir, resume_step=start if restored_step is not None else None)

  bar = None
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm.tqdm(total=num_steps, initial=start, dynamic_ncols=True)

  try:
    batches = prefetch_to_device(
        host_batches, put=lambda b: parallel.put_batch(b, mesh))
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
        result = evaluate(val_learner, parallel.local_copy(state.meta_params),
                          val_source,
                          episodes=val_episodes, seed=seed + 1,
                          eval_step=val_step)
        if writer is not None:
          writer.write(done, {f"val/{result.metric}": result.mean,
                              f"val/{result.metric}_ci95": result.ci95})
        if bar is not None:
          bar.write(f"step {done}: val {result.metric} {result.mean:.4f} "
                    f"+- {result.ci95:.4f}")
        if best_checkpointer is not None and (
            best is None or _improves(result.metric, result.mean,
                                      best["mean"])):
          best_checkpointer.save(done, state)
          best_checkpointer.wait()
          best = {"step": done, "metric": result.metric,
                  "mean": result.mean, "ci95": result.ci95}
          if primary:
            metrics_io.write_json(os.path.join(workdir, BEST_JSON), best)
      if checkpointer is not None and (done % checkpoint_every == 0
                                       or done == num_steps):
        leaves = jax.tree.leaves(state.meta_params)
        nonfinite = int(_count_nonfinite(leaves))
        if nonfinite:  # finite gradients, but an update that overflowed
          if writer is not None:
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
    if best_checkpointer is not None:
      best_checkpointer.close()
    if writer is not None:
      writer.close()
  return state
