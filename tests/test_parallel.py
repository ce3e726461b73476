"""Data parallelism over tasks, several processes, chunked meta-batches, and
the memory check before training."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import optax
import pytest

from metajax import from_config
from metajax import memory
from metajax import runs
from metajax import step as step_lib
from metajax import train
from metajax.data.episodes import step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.learners.maml import maml
from metajax.models.mlp import MLP

REPO = pathlib.Path(__file__).resolve().parents[1]


def _env(**extra):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env.update(extra)
  return env


def test_eight_devices_give_the_one_device_step():
  """On 8 (forced host) CPU devices: the sharded meta-step equals the
  one-device step, with and without chunks, for a loss-gradient learner
  (MAML) and an outer_grad learner (Reptile); meta_train on 8 devices ends
  where it ends on one; a meta-batch that does not divide is refused."""
  proc = subprocess.run(
    [sys.executable, str(REPO / "tests" / "parallel_worker.py")],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
    env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"),
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "OK" in proc.stdout.splitlines()


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


SMOKE = [
  "--config=experiments/configs/maml_sinusoid.py:smoke",
  "--config.num_steps=2",
  "--config.meta_batch_size=4",
  "--config.eval_episodes=10",
  "--config.val_every=0",
  "--noprogress",
]


def test_two_processes_train_one_run_together(tmp_path):
  """Two processes of the binary on loopback (jax.distributed, one CPU
  device each) meta-train one run: its checkpoint equals the same steps taken
  in one process on the union of the two processes' task shares."""
  workdir = tmp_path / "run"
  port = _free_port()
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "experiments.train",
        *SMOKE,
        f"--workdir={workdir}",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={i}",
      ],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=_env(),
    )
    for i in range(2)
  ]
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=240))
  finally:
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  # Process 0 prints and writes the results; process 1 does not.
  printed = [l for l in outs[0][0].splitlines() if l.startswith("{")]
  assert json.loads(printed[0])["episodes"] == 10
  assert not [l for l in outs[1][0].splitlines() if l.startswith("{")]
  assert (workdir / "results.json").exists()

  run = runs.load_run(str(workdir))
  config = run.config
  source = from_config.build_sources(config)["train"]
  learner = from_config.build_learner(config)
  outer = from_config.build_outer_opt(config)
  init_key, train_key = step_lib.seed_keys(config.seed)
  state = jax.jit(lambda k, b: step_lib.init_train_state(learner, outer, k, b))(
    init_key, source.sample_batch(step_rng(config.seed, 0), 1)
  )
  step = step_lib.make_meta_step(learner, outer)
  for s in range(2):
    shares = [
      source.sample_batch(np.random.default_rng([config.seed, s, p]), 2)
      for p in range(2)
    ]
    batch = jax.tree.map(lambda *xs: np.concatenate(xs), *shares)
    state, _ = step(state, batch, jax.random.fold_in(train_key, s))
  for got, want in zip(
    jax.tree.leaves(run.meta_params), jax.tree.leaves(state.meta_params)
  ):
    np.testing.assert_allclose(
      np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6
    )


def test_distributed_flags_must_come_together():
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.train", *SMOKE, "--num_processes=2"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
    env=_env(),
  )
  assert proc.returncode != 0
  assert "Give all of coordinator_address, num_processes and process_id" in (
    proc.stderr
  )


def _setup(tasks=8):
  source = SinusoidSampler(shots=5, queries=5)
  batch = source.sample_batch(np.random.default_rng(0), tasks)
  learner = maml(MLP(1, (16, 16)), inner_lr=0.01, task="regression")
  return source, batch, learner


def _noisy(learner):
  """The learner with support inputs jittered by each task's key, so that
  the meta-gradient depends on which key each task gets."""

  def adapt(params, support, key):
    x, y = support
    return learner.adapt(params, (x + jax.random.normal(key, x.shape), y), key)

  return learner._replace(adapt=adapt)


def test_chunks_give_the_same_meta_gradient():
  _, batch, learner = _setup()
  learner = _noisy(learner)
  params = learner.init(jax.random.key(0), jax.tree.map(lambda a: a[0], batch))
  key = jax.random.key(1)
  gradient = jax.jit(
    lambda p, b, k, n: step_lib.meta_gradient(learner, p, b, k, n),
    static_argnums=3,
  )
  (loss, metric), grads = gradient(params, batch, key, 1)
  for chunks in (2, 8):
    (c_loss, c_metric), c_grads = gradient(params, batch, key, chunks)
    np.testing.assert_allclose(c_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(c_metric, metric, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(c_grads), jax.tree.leaves(grads)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The keys matter: each chunk must have handed each task its own key.
  _, other = gradient(params, batch, jax.random.key(2), 1)
  assert any(
    not np.allclose(a, b, rtol=1e-3)
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(grads))
  )


def test_bad_chunk_sizes_are_refused():
  _, batch, learner = _setup()
  outer = optax.adam(1e-3)
  state = step_lib.init_train_state(learner, outer, jax.random.key(0), batch)
  with pytest.raises(
    ValueError,
    match="tasks_per_chunk must be a positive "
    "integer that divides the 8 tasks per device",
  ):
    step_lib.make_meta_step(learner, outer, tasks_per_chunk=3)(
      state, batch, jax.random.key(1)
    )
  with pytest.raises(ValueError, match="num_chunks"):
    step_lib.meta_gradient(
      learner, state.meta_params, batch, jax.random.key(1), num_chunks=0
    )


def _compiled(learner, batch, chunk=None):
  outer = optax.adam(1e-3)
  state = step_lib.init_train_state(learner, outer, jax.random.key(0), batch)
  return (
    step_lib.make_meta_step(learner, outer, tasks_per_chunk=chunk)
    .lower(state, batch, jax.random.key(1))
    .compile()
  )


def test_memory_estimate_grows_with_tasks_and_shrinks_with_chunks():
  _, batch, learner = _setup(tasks=32)
  whole = memory.step_memory_bytes(_compiled(learner, batch, chunk=32))
  chunked = memory.step_memory_bytes(_compiled(learner, batch, chunk=2))
  small = memory.step_memory_bytes(
    _compiled(learner, jax.tree.map(lambda a: a[:4], batch), chunk=4)
  )
  assert whole > 4 * chunked, (whole, chunked)
  assert whole > 4 * small, (whole, small)
  assert memory.available_memory_bytes(jax.devices()[0]) > 0


def test_step_that_does_not_fit_stops_before_training(tmp_path, monkeypatch):
  source, batch, learner = _setup()
  compiled = _compiled(learner, batch)
  needed = memory.step_memory_bytes(compiled)
  device = jax.devices()[0]
  assert memory.check_step_fits(compiled, device, available=needed) == needed
  with pytest.raises(memory.StepMemoryError, match="tasks_per_chunk"):
    memory.check_step_fits(compiled, device, available=needed - 1)

  monkeypatch.setattr(memory, "available_memory_bytes", lambda d: 1000)
  with pytest.raises(memory.StepMemoryError, match="only 0 MB are free"):
    train.meta_train(
      learner,
      source,
      outer_opt=optax.adam(1e-3),
      num_steps=2,
      meta_batch_size=8,
      workdir=str(tmp_path),
    )
  assert not list((tmp_path / "checkpoints").glob("[0-9]*"))
  assert not (tmp_path / "metrics.jsonl").exists()
  state = train.meta_train(
    learner,
    source,
    outer_opt=optax.adam(1e-3),
    num_steps=1,
    meta_batch_size=8,
    check_memory=False,
  )
  assert int(state.step) == 1


def test_config_checks_devices_and_chunks():
  config = ml_collections.ConfigDict(dict(_sinusoid_config(), num_devices=2))
  with pytest.raises(
    ValueError,
    match=r"num_devices must be an integer in "
    r"\[1, 1\]",
  ):
    from_config.validate(config)
  config.num_devices = None
  config.tasks_per_chunk = 4
  with pytest.raises(ValueError, match="tasks_per_chunk=4 must divide the 25"):
    from_config.validate(config)
  config.tasks_per_chunk = 5
  from_config.validate(config)


def _sinusoid_config():
  from experiments.configs import maml_sinusoid  # pylint: disable=g-import-not-at-top

  return maml_sinusoid.get_config("smoke").to_dict()
