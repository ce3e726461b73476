r"""Meta-training speed of every learner on Conv4 (and of ProtoNets and MAML on
ResNet-12): tasks/s, compile, memory, FLOPs.

  python -m experiments.benchmark                       # all rows
  python -m experiments.benchmark --rows=maml_patches --steps=20
  python -m experiments.benchmark --json_out=/tmp/bench.jsonl
  python -m experiments.benchmark --rows=maml_patches --compute_dtype=bfloat16
  python -m experiments.benchmark --rows=imaml,maml_patches,maml_remat \
      --inner_steps_sweep=1,4,16      # memory against inner steps

The setting is MAML's Omniglot one: 5-way 1-shot, 15 queries per class,
28x28x1 images, meta-batch 32, one inner SGD step (lr 0.4), Adam outer step;
random uint8 images stand in for data (speed does not depend on them).

Rows (all on Conv4(conv_impl="patches") unless named xla), each with the
trainer's default chunking of the meta-batch unless named vmapped or loop
(`step.make_meta_step`'s tasks_per_chunk: automatic, 1 task at a time on
CPU, all at once on accelerators; --tasks_per_chunk sets it):
  maml_patches    second-order MAML (the default conv lowering)
  maml_xla        second-order MAML, Conv4(conv_impl="xla"): XLA convolution,
                  which vmap over tasks with per-task weights turns into a
                  grouped convolution (slow on CPU: fewer steps, --xla_steps)
  maml_remat      second-order MAML, each inner step rematerialized
  fomaml_patches  first-order MAML
  meta_sgd        Meta-SGD (inner rates of 0.4, learned)
  meta_curvature  Meta-Curvature (inner SGD 0.4 on the gradient times
                  learned Kronecker factors, identity at the start)
  anil            ANIL (inner loop on the head only)
  reptile         Reptile (inner Adam with beta1 = 0, --inner_steps steps)
  reptile_carried Reptile whose inner Adam statistics carry across tasks
                  (carry_inner_state, the paper's code)
  protonet        Prototypical Networks (Euclidean), Conv4 embedding
  matching_net    Matching Networks (cosine attention, no FCE)
  matching_fce    Matching Networks with full context embeddings
  baseline_pp     Baseline++ pre-training step: the same number of images
                  per step (meta_batch_size x ways x (shots + queries)) as
                  non-episodic mini-batches; tasks/s counts episodes' worth
  mann            MANN (paper sizes: LSTM 200, memory 128 x 40, 4 heads) on
                  Conv4 without batch norm; each query a step after the support
  snail           SNAIL (the paper's Omniglot blocks) on Conv4 without batch
                  norm; each query its own sequence after the support
  maml_loop       the naive baseline of maml_patches: the same jitted
                  meta-gradient of ONE task called in a Python loop over the
                  meta-batch (gradients summed by a jitted add), then one
                  jitted mean + Adam update; step_ms times the whole loop
  protonet_loop   the same loop baseline for protonet
  maml_bf16       maml_patches with Conv4(compute_dtype="bfloat16"): the
                  convs' matmuls on bfloat16 inputs, float32 accumulation
  protonet_bf16   protonet with the same bfloat16 matmuls
  maml_vmapped    maml_patches with all tasks of the meta-batch adapted at
                  once (tasks_per_chunk = meta_batch_size): one vmapped step
  protonet_vmapped  the same for protonet
  imaml           iMAML (lam 2, 5 CG steps; inner SGD 0.4, --inner_steps
                  steps): the implicit meta-gradient, whose memory does not
                  grow with the inner steps; beside maml_patches (through
                  the unrolled steps) and maml_remat with
                  --inner_steps_sweep, step MB (XLA) against inner steps
  metaoptnet      MetaOptNet-SVM (C 0.1, 100 solver steps on the dual, the
                  meta-gradient through them), Conv4 embedding
  protonet_resnet12      protonet on ResNet12(conv_impl="patches") instead
                  of Conv4 (channels: --resnet12_channels; --image_size
                  1-channel images, e.g. 28 -> 14 -> 7 -> 3 -> 1)
  protonet_resnet12_xla  the same on ResNet12(conv_impl="xla")
  maml_resnet12   second-order MAML on ResNet12(conv_impl="patches")
  maml_resnet12_xla      the same on ResNet12(conv_impl="xla")

--inner_steps_sweep=1,4,16 runs every row at each of those inner-step counts
(instead of --inner_steps), each named row@steps.

--compute_dtype=bfloat16 applies the bfloat16 matmuls to every Conv4 row with
conv_impl="patches" (maml_xla stays float32).

Each row runs in its own subprocess (so compile caches and peak memory are
its own) and prints one JSON line:
  tasks_per_s     meta_batch_size / median step time
  step_ms         median (and step_ms_min) over the timed steps, after warm-up
  compile_s       trace + lower + XLA compile of the meta-step (loop rows:
                  of the one-task gradient, the add and the update)
  peak_rss_mb     the subprocess's peak resident memory (getrusage via wait4);
                  rss_before_compile_mb is the peak before compiling (the
                  JAX runtime, the batch and the initial state)
  gflop_per_step  XLA's cost analysis of the meta-step with all tasks at
                  once, lowered (not optimized): XLA counts a loop body once,
                  so the chunked step's own count would be one chunk's
  tasks_per_chunk the tasks adapted at once inside the step (loop rows: 1)
  step_memory_mb  XLA's estimate of the memory the compiled step allocates
                  (temporaries and outputs; `memory.step_memory_bytes`); None
                  for loop rows
  host_sample_ms  median ms to sample one meta-batch on the host (the
                  trainer's EpisodeSampler over an Omniglot-sized source)
  host_put_ms     median ms to copy it to the device; the trainer does both
                  in a background thread, so they stall the step only if
                  their sum exceeds step_ms (--sample_repeats=0 skips them)
  step_gflops     gflop_per_step / median step time
  matmul_gflops   float32 [n, n] @ [n, n] rate in the same process
  matmul_share    step_gflops / matmul_gflops
  backend, device JAX's default backend and its first device's kind (the
                  table's "device" column)
  compute_dtype   the convs' matmul input dtype
then a table of all rows.
"""

import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging

ROWS = {
  # name: (learner, conv_impl, options); options go to the learner, except
  # MODEL_OPTIONS (Conv4's) and BENCH_OPTIONS (the benchmark's own).
  "maml_patches": ("maml", "patches", {}),
  "maml_xla": ("maml", "xla", {}),
  "maml_remat": ("maml", "patches", {"remat": True}),
  "fomaml_patches": ("fomaml", "patches", {}),
  "meta_sgd": ("meta_sgd", "patches", {}),
  "meta_curvature": ("meta_curvature", "patches", {}),
  "anil": ("anil", "patches", {}),
  "protomaml": ("protomaml", "patches", {}),
  "reptile": ("reptile", "patches", {}),
  "reptile_carried": ("reptile", "patches", {"carry_inner_state": True}),
  "protonet": ("protonet", "patches", {}),
  "matching_net": ("matching_net", "patches", {}),
  "matching_fce": ("matching_net", "patches", {"fce": True}),
  "r2d2": ("r2d2", "patches", {}),
  "lrd2": ("lrd2", "patches", {}),
  "baseline_pp": ("baseline_pp", "patches", {}),
  "meta_lstm": ("meta_learner_lstm", "patches", {}),
  "mann": ("mann", "patches", {"norm": False}),
  "snail": ("snail", "patches", {"norm": False}),
  "maml_loop": ("maml", "patches", {"loop": True}),
  "protonet_loop": ("protonet", "patches", {"loop": True}),
  "maml_bf16": ("maml", "patches", {"compute_dtype": "bfloat16"}),
  "protonet_bf16": ("protonet", "patches", {"compute_dtype": "bfloat16"}),
  "maml_vmapped": ("maml", "patches", {"vmapped": True}),
  "protonet_vmapped": ("protonet", "patches", {"vmapped": True}),
  "imaml": ("imaml", "patches", {}),
  "metaoptnet": ("metaoptnet", "patches", {}),
  "protonet_resnet12": ("protonet", "patches", {"model": "resnet12"}),
  "protonet_resnet12_xla": ("protonet", "xla", {"model": "resnet12"}),
  "maml_resnet12": ("maml", "patches", {"model": "resnet12"}),
  "maml_resnet12_xla": ("maml", "xla", {"model": "resnet12"}),
}
# loop: time the per-task Python loop baseline; vmapped: all tasks of the
# meta-batch adapted at once (tasks_per_chunk = the meta-batch size); model:
# the backbone, "conv4" unless named ("resnet12": --resnet12_channels).
BENCH_OPTIONS = ("loop", "vmapped", "model")
MODEL_OPTIONS = ("norm", "compute_dtype")
# Learners with an inner loop: 1 step of SGD 0.4 (or Adam, Reptile's), the
# MAML Omniglot setting; the Meta-Learner LSTM learns its steps.
INNER_LOOP = (
  "maml",
  "fomaml",
  "meta_sgd",
  "meta_curvature",
  "anil",
  "protomaml",
  "reptile",
  "meta_learner_lstm",
  "imaml",
)

_STEPS = flags.DEFINE_integer("steps", 10, "Timed meta-steps per row.")
_WARMUP = flags.DEFINE_integer(
  "warmup", 2, "Untimed meta-steps before timing (after compilation)."
)
_XLA_STEPS = flags.DEFINE_integer(
  "xla_steps",
  2,
  "Timed steps for conv_impl=xla rows (slow on CPU); at most --steps.",
)
_XLA_WARMUP = flags.DEFINE_integer(
  "xla_warmup", 1, "Warm-up steps for conv_impl=xla rows; at most --warmup."
)
_META_BATCH_SIZE = flags.DEFINE_integer(
  "meta_batch_size", 32, "Tasks per meta-step."
)
_ROWS = flags.DEFINE_list(
  "rows", list(ROWS), f"Rows to run, a subset of {list(ROWS)}."
)
_JSON_OUT = flags.DEFINE_string(
  "json_out", None, "Also append the JSON lines to this file."
)
_WAYS = flags.DEFINE_integer("ways", 5, "Classes per task (N).")
_SHOTS = flags.DEFINE_integer("shots", 1, "Support examples per class (K).")
_QUERIES = flags.DEFINE_integer("queries", 15, "Query examples per class.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 28, "Image height and width.")
_FILTERS = flags.DEFINE_integer("filters", 64, "Conv4 filters.")
_RESNET12_CHANNELS = flags.DEFINE_list(
  "resnet12_channels",
  ["64", "160", "320", "640"],
  "ResNet-12's channels per block, for the *_resnet12 rows.",
)
_INNER_STEPS = flags.DEFINE_integer(
  "inner_steps", 1, "Inner steps of the gradient-based rows."
)
_INNER_STEPS_SWEEP = flags.DEFINE_list(
  "inner_steps_sweep",
  [],
  "Inner-step counts to run every row at, instead of --inner_steps "
  "(e.g. 1,4,16 with --rows=imaml,maml_patches: memory against inner "
  "steps); each result is named row@steps.",
)
_MATMUL_SIZE = flags.DEFINE_integer(
  "matmul_size", 2048, "n of the reference float32 n x n matmul."
)
_TASKS_PER_CHUNK = flags.DEFINE_integer(
  "tasks_per_chunk",
  None,
  "Tasks adapted at once inside the meta-step "
  "(step.make_meta_step's tasks_per_chunk) for rows that do not set their "
  "own; must divide --meta_batch_size. Default: the trainer's automatic "
  "choice (1 on CPU, all on accelerators).",
)
_SAMPLE_REPEATS = flags.DEFINE_integer(
  "sample_repeats",
  5,
  "Host-side meta-batches sampled and copied to the "
  "device to time the input pipeline.",
)
_COMPUTE_DTYPE = flags.DEFINE_enum(
  "compute_dtype",
  "float32",
  ["float32", "bfloat16"],
  "Conv4's compute_dtype for rows that do not set their own: the convs' "
  "matmul inputs (float32 accumulation either way).",
)
_WORKER = flags.DEFINE_string(
  "worker", None, "Internal: run this one row in this process."
)


def _median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _time(fn, repeats):
  """Wall seconds of `repeats` calls of fn() (which must block)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def matmul_gflops(n: int, repeats: int = 5) -> float:
  """XLA float32 [n, n] @ [n, n] rate, GFLOP/s (median of `repeats`)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, b).block_until_ready()
  seconds = _median(_time(lambda: dot(a, b).block_until_ready(), repeats))
  return 2.0 * n**3 / seconds / 1e9


def _flops(compiled) -> float:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per module
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def run_row(row: str) -> dict:
  """Compiles and times one row in this process; returns its measurements."""
  # Imported here so that the parent process (which only spawns workers)
  # stays light; each worker is a fresh process.
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from metajax import from_config  # pylint: disable=g-import-not-at-top
  from metajax import memory  # pylint: disable=g-import-not-at-top
  from metajax import step as step_lib  # pylint: disable=g-import-not-at-top
  from metajax.types import Episode  # pylint: disable=g-import-not-at-top

  learner_name, conv_impl, options = ROWS[row]
  learner_options = {
    k: v for k, v in options.items() if k not in BENCH_OPTIONS + MODEL_OPTIONS
  }
  model_options = {k: v for k, v in options.items() if k in MODEL_OPTIONS}
  loop = bool(options.get("loop", False))
  model_options.setdefault(
    "compute_dtype",
    _COMPUTE_DTYPE.value if conv_impl == "patches" else "float32",
  )
  compute_dtype = model_options["compute_dtype"]
  steps, warmup = _STEPS.value, _WARMUP.value
  if conv_impl == "xla":
    steps, warmup = min(steps, _XLA_STEPS.value), min(warmup, _XLA_WARMUP.value)
  tasks, ways, shots, queries = (
    _META_BATCH_SIZE.value,
    _WAYS.value,
    _SHOTS.value,
    _QUERIES.value,
  )
  size = _IMAGE_SIZE.value

  rng = np.random.default_rng(0)

  def images(n):
    return rng.integers(0, 256, (tasks, n, size, size, 1), dtype=np.uint8)

  def labels(per_class):
    return np.tile(
      np.repeat(np.arange(ways, dtype=np.int32), per_class), (tasks, 1)
    )

  if learner_name == "baseline_pp":  # mini-batches of the same image count
    n = ways * (shots + queries)
    batch = Episode(
      support_x=images(0),
      support_y=labels(0),
      query_x=images(n),
      query_y=rng.integers(0, 100, (tasks, n), dtype=np.int32),
    )
  else:
    batch = Episode(
      support_x=images(ways * shots),
      support_y=labels(shots),
      query_x=images(ways * queries),
      query_y=labels(queries),
    )
  batch = jax.device_put(batch)
  config = from_config.default_config()
  model = options.get("model", "conv4")
  config.update(
    dict(
      learner=learner_name,
      model=model,
      ways=ways,
      shots=shots,
      num_classes=100,
    )
  )
  if model == "resnet12":
    model_options["channels"] = tuple(map(int, _RESNET12_CHANNELS.value))
  else:
    model_options.update(filters=_FILTERS.value, pooling="stride")
  config.model_kwargs.update(dict(conv_impl=conv_impl, **model_options))
  if learner_name in INNER_LOOP:
    config.inner_steps = _INNER_STEPS.value
    if learner_name != "meta_learner_lstm":
      config.inner_lr = 0.4
  config.learner_kwargs.update(learner_options)
  learner = from_config.build_learner(config)
  outer_opt = from_config.build_outer_opt(config)  # Adam 1e-3
  init_key, step_key = jax.random.split(jax.random.key(0))
  state = jax.block_until_ready(
    jax.jit(lambda k, b: step_lib.init_train_state(learner, outer_opt, k, b))(
      init_key, batch
    )
  )

  rss_before_compile_mb = (
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  )
  # XLA's cost analysis counts a loop body once, so the FLOPs of every row
  # come from the meta-step with all tasks at once (no loop over chunks),
  # lowered but not compiled: the unoptimized program's count.
  gflop = (
    _flops(
      step_lib.make_meta_step(learner, outer_opt, tasks_per_chunk=tasks).lower(
        state, batch, step_key
      )
    )
    / 1e9
  )
  step_memory_mb = None
  if loop:
    chunk = 1
    compile_s, compiled = _compile_loop_step(
      learner, outer_opt, state, batch, step_key
    )
  else:
    chunk = tasks if options.get("vmapped") else _TASKS_PER_CHUNK.value
    if chunk is None:
      chunk = step_lib.auto_tasks_per_chunk(jax.default_backend()) or tasks
    meta_step = step_lib.make_meta_step(
      learner, outer_opt, tasks_per_chunk=chunk
    )
    start = time.perf_counter()
    compiled = meta_step.lower(state, batch, step_key).compile()
    compile_s = time.perf_counter() - start
    estimate = memory.step_memory_bytes(compiled)
    step_memory_mb = None if estimate is None else estimate / 2**20

  step = 0

  def one_step():
    nonlocal state, step
    state, metrics = compiled(state, batch, jax.random.fold_in(step_key, step))
    jax.block_until_ready((state, metrics))
    step += 1

  _time(one_step, warmup)
  times = _time(one_step, steps)
  sample_ms, put_ms = (
    host_pipeline_ms(tasks, ways, shots, queries, size, _SAMPLE_REPEATS.value)
    if _SAMPLE_REPEATS.value
    else (None, None)
  )
  rate = matmul_gflops(_MATMUL_SIZE.value)
  step_s = _median(times)
  device = jax.devices()[0]
  return {
    "row": row,
    "learner": learner_name,
    "conv_impl": conv_impl,
    "compute_dtype": compute_dtype,
    "tasks_per_chunk": chunk,
    "step_memory_mb": step_memory_mb,
    "host_sample_ms": sample_ms,
    "host_put_ms": put_ms,
    "options": options,
    "ways": ways,
    "shots": shots,
    "queries": queries,
    "image_size": size,
    "model": model,
    "filters": _FILTERS.value,
    "channels": model_options.get("channels"),
    "meta_batch_size": tasks,
    "inner_steps": _INNER_STEPS.value,
    "steps": steps,
    "warmup": warmup,
    "tasks_per_s": tasks / step_s,
    "step_ms": 1e3 * step_s,
    "step_ms_min": 1e3 * min(times),
    "compile_s": compile_s,
    "rss_before_compile_mb": rss_before_compile_mb,
    "gflop_per_step": gflop,
    "step_gflops": gflop / step_s,
    "matmul_gflops": rate,
    "matmul_share": gflop / step_s / rate,
    "backend": jax.default_backend(),
    "device": device.device_kind,
    "jax_version": jax.__version__,
  }


def _compile_loop_step(learner, outer_opt, state, batch, key):
  """The naive baseline: a Python loop over tasks of one jitted task gradient.

  Returns (compile seconds, step) where
  `step(state, batch, key) -> (state, metrics)` calls the jitted meta-gradient
  of a one-task batch (`step.meta_gradient`, the same per-task code as the
  vmapped step) once per task, sums the gradients with a jitted add, then
  applies one jitted mean + Adam update. The one-task batches are sliced
  beforehand (outside the timing, as data already on the device).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from metajax import step as step_lib  # pylint: disable=g-import-not-at-top

  outer_opt = step_lib.outer_optimizer(learner, outer_opt)

  tasks = jax.tree.leaves(batch)[0].shape[0]
  task_batches = [
    jax.tree.map(lambda a, t=t: a[t : t + 1], batch) for t in range(tasks)
  ]
  one_task = jax.jit(lambda p, b, k: step_lib.meta_gradient(learner, p, b, k))
  add = lambda a, b: jax.tree.map(jax.numpy.add, a, b)

  def apply(state, grads, loss, metric):
    grads = jax.tree.map(lambda g: g / tasks, grads)
    updates, opt_state = outer_opt.update(
      grads, state.opt_state, state.meta_params
    )
    meta_params = optax.apply_updates(state.meta_params, updates)
    metrics = {
      "loss": loss / tasks,
      learner.metric_name: metric / tasks,
      "grad_norm": optax.tree.norm(grads),
    }
    return step_lib.TrainState(state.step + 1, meta_params, opt_state), metrics

  start = time.perf_counter()
  one_task_c = one_task.lower(state.meta_params, task_batches[0], key).compile()
  out = one_task_c(state.meta_params, task_batches[0], key)
  (loss, metric), grads = out
  add_c = jax.jit(add).lower(out, out).compile()
  apply_c = jax.jit(apply).lower(state, grads, loss, metric).compile()
  compile_s = time.perf_counter() - start

  def step(state, batch, key):
    del batch  # the pre-sliced task_batches are this batch's tasks
    keys = jax.random.split(key, tasks)
    total = None
    for t in range(tasks):
      (loss, metric), grads = one_task_c(
        state.meta_params, task_batches[t], keys[t]
      )
      total = (
        ((loss, metric), grads)
        if total is None
        else add_c(total, ((loss, metric), grads))
      )
    (loss, metric), grads = total
    return apply_c(state, grads, loss, metric)

  return compile_s, step


def _worker_args(row):
  args = [sys.executable, "-m", "experiments.benchmark", f"--worker={row}"]
  for flag in (
    _STEPS,
    _WARMUP,
    _XLA_STEPS,
    _XLA_WARMUP,
    _META_BATCH_SIZE,
    _WAYS,
    _SHOTS,
    _QUERIES,
    _IMAGE_SIZE,
    _FILTERS,
    _RESNET12_CHANNELS,
    _INNER_STEPS,
    _MATMUL_SIZE,
    _COMPUTE_DTYPE,
    _TASKS_PER_CHUNK,
    _SAMPLE_REPEATS,
  ):
    if flag.value is not None:
      value = flag.value
      if isinstance(value, list):
        value = ",".join(value)
      args.append(f"--{flag.name}={value}")
  return args


def host_pipeline_ms(
  tasks: int, ways: int, shots: int, queries: int, size: int, repeats: int
):
  """Median ms to sample one meta-batch on the host and to copy it over.

  The source is Omniglot's training split in shape (964 classes of 20 uint8
  images, random pixels) under the trainer's `EpisodeSampler`; the copy is
  `jax.device_put` of the batch to the first device, until it is there.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from metajax.data.episodes import EpisodeSampler  # pylint: disable=g-import-not-at-top
  from metajax.data.sources import ClassImages  # pylint: disable=g-import-not-at-top

  images = np.random.default_rng(1).integers(
    0, 256, (964, 20, size, size, 1), dtype=np.uint8
  )
  sampler = EpisodeSampler(
    ClassImages(images, [str(i) for i in range(964)]),
    ways=ways,
    shots=shots,
    queries=queries,
  )
  batches = []
  sample = _time(
    lambda: batches.append(
      sampler.sample_batch(np.random.default_rng(len(batches)), tasks)
    ),
    repeats,
  )
  put = _time(
    lambda: jax.block_until_ready(jax.device_put(batches.pop())), repeats
  )
  return 1e3 * _median(sample), 1e3 * _median(put)


def spawn_row(row: str, inner_steps=None) -> dict:
  """Runs one row in a subprocess; adds its peak RSS to the row's JSON.

  `inner_steps` (not None) replaces --inner_steps and names the row
  row@inner_steps.
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  args = _worker_args(row)
  if inner_steps is not None:
    args.append(f"--inner_steps={inner_steps}")
  proc = subprocess.Popen(args, stdout=subprocess.PIPE, cwd=root, text=True)
  out = proc.stdout.read()
  proc.stdout.close()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  if proc.returncode != 0:
    raise RuntimeError(f"benchmark row {row} failed (exit {proc.returncode})")
  lines = [l for l in out.splitlines() if l.startswith("{")]
  if not lines:
    raise RuntimeError(f"benchmark row {row} printed no JSON line:\n{out}")
  result = json.loads(lines[-1])
  result["peak_rss_mb"] = usage.ru_maxrss / 1024.0  # Linux: KiB
  if inner_steps is not None:
    result["row"] = f"{row}@{inner_steps}"
  return result


def format_table(results) -> str:
  """A fixed-width table of the main fields of the rows in `results`."""
  header = (
    "row",
    "tasks/s",
    "step ms",
    "chunk",
    "compile s",
    "peak MB",
    "step MB (XLA)",
    "GFLOP/step",
    "matmul GFLOP/s",
    "share",
    "sample+put ms",
    "device",
  )
  lines = [
    " | ".join(f"{h:>13}" if i else f"{h:<16}" for i, h in enumerate(header))
  ]
  for r in results:
    memory = r.get("step_memory_mb")
    host = (
      f"{r['host_sample_ms']:.1f}+{r['host_put_ms']:.1f}"
      if r.get("host_sample_ms") is not None
      else "-"
    )
    cells = [
      f"{r['row']:<16}",
      f"{r['tasks_per_s']:>13.2f}",
      f"{r['step_ms']:>13.1f}",
      f"{r['tasks_per_chunk']:>13}",
      f"{r['compile_s']:>13.1f}",
      f"{r['peak_rss_mb']:>13.0f}",
      f"{memory:>13.0f}" if memory is not None else f"{'-':>13}",
      f"{r['gflop_per_step']:>13.4g}",
      f"{r['matmul_gflops']:>13.1f}",
      f"{r['matmul_share']:>13.1%}",
      f"{host:>13}",
      f"{r['backend']} {r['device']}",
    ]
    lines.append(" | ".join(cells))
  return "\n".join(lines)


def main(argv):
  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _WORKER.value:
    print(json.dumps(run_row(_WORKER.value)), flush=True)
    return
  if _STEPS.value < 1 or _XLA_STEPS.value < 1:
    raise app.UsageError("--steps and --xla_steps must be >= 1.")
  if _WARMUP.value < 0 or _XLA_WARMUP.value < 0:
    raise app.UsageError("--warmup and --xla_warmup must be >= 0.")
  if _SAMPLE_REPEATS.value < 0:
    raise app.UsageError("--sample_repeats must be >= 0.")
  chunk = _TASKS_PER_CHUNK.value
  if chunk is not None and (chunk < 1 or _META_BATCH_SIZE.value % chunk):
    raise app.UsageError(
      f"--tasks_per_chunk={chunk} must be >= 1 and divide "
      f"--meta_batch_size={_META_BATCH_SIZE.value}."
    )
  unknown = [r for r in _ROWS.value if r not in ROWS]
  if unknown:
    raise app.UsageError(f"Unknown rows {unknown}; choose from {list(ROWS)}.")
  try:
    sweep = [int(n) for n in _INNER_STEPS_SWEEP.value] or [None]
  except ValueError:
    sweep = [-1]
  if any(n is not None and n < 0 for n in sweep):
    raise app.UsageError(
      "--inner_steps_sweep must be integers >= 0, got "
      f"{_INNER_STEPS_SWEEP.value}."
    )
  results = []
  for row, inner_steps in [(r, n) for n in sweep for r in _ROWS.value]:
    result = spawn_row(row, inner_steps)
    line = json.dumps(result)
    print(line, flush=True)
    if _JSON_OUT.value:
      with open(_JSON_OUT.value, "a") as f:
        f.write(line + "\n")
    results.append(result)
  print(format_table(results))


if __name__ == "__main__":
  app.run(main)
