"""Reliability: bad input, determinism, crash-safe resume, numerical faults.

Each test backs a row of docs/reliability.md.
"""

import importlib
import json
import math
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from hypothesis import given, settings, strategies as st

from experiments.configs import maml_omniglot
from experiments.configs import maml_sinusoid
from experiments.configs import protonet_omniglot
from metajax import checkpoint as ckpt_lib
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import metrics_io
from metajax import models
from metajax import runs
from metajax import train as train_lib
from metajax.data.episodes import ClassBatchSampler, EpisodeSampler, step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.data.sources import ClassImages
from metajax.learners import baseline, maml, meta_sgd, protonet, reptile
from metajax.types import Episode, Learner
from tests.conftest import REPO

PROPERTY = settings(max_examples=25, deadline=None)


def assert_bitwise_equal(a, b):
  """Same tree structure, and every leaf has the same dtype, shape and bytes."""
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    x, y = np.asarray(x), np.asarray(y)
    assert (x.dtype, x.shape) == (y.dtype, y.shape)
    assert x.tobytes() == y.tobytes()


def differs(a, b):
  return any(np.asarray(x).tobytes() != np.asarray(y).tobytes()
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --------------------------------------------------------------- determinism


def test_same_config_and_seed_give_bitwise_identical_runs(tmp_path):
  config = maml_sinusoid.get_config("smoke")
  results = [runs.train_and_evaluate(config, str(tmp_path / w))
             for w in ("a", "b")]
  assert_bitwise_equal(runs.load_run(str(tmp_path / "a")).meta_params,
                       runs.load_run(str(tmp_path / "b")).meta_params)
  lines_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
  lines_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
  assert len(lines_a) > 5 and lines_a == lines_b
  assert results[0]["mean"] == results[1]["mean"]
  assert results[0]["ci95"] == results[1]["ci95"]
  assert ((tmp_path / "a" / "results.json").read_text()
          == (tmp_path / "b" / "results.json").read_text())
  # The seed matters: another one gives other parameters.
  config.seed = 1
  runs.train_and_evaluate(config, str(tmp_path / "c"))
  assert differs(runs.load_run(str(tmp_path / "a")).meta_params,
                 runs.load_run(str(tmp_path / "c")).meta_params)


# ------------------------------------------------ kill -9 and resume (binary)

NUM_STEPS, CHECKPOINT_EVERY = 3000, 250
KILL_FLAGS = ["--config=experiments/configs/maml_sinusoid.py:smoke",
              "--noprogress", f"--config.num_steps={NUM_STEPS}",
              f"--config.checkpoint_every={CHECKPOINT_EVERY}",
              "--config.log_every=25", "--config.val_every=500",
              "--config.val_episodes=10", "--config.meta_batch_size=5",
              "--config.hidden=(8,)", "--config.eval_episodes=20"]


def train_command(workdir):
  return [sys.executable, "-m", "experiments.train", *KILL_FLAGS,
          f"--workdir={workdir}"]


def checkpoint_steps(workdir):
  """Finished orbax checkpoints: step folders (temporary ones are ignored)."""
  folder = pathlib.Path(workdir) / "checkpoints"
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def logged_steps(workdir):
  """Steps of the complete rows of metrics.jsonl (a torn last line skipped)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  steps = []
  if path.exists():
    for line in path.read_text().splitlines():
      try:
        steps.append(json.loads(line)["step"])
      except (ValueError, KeyError):
        pass
  return steps


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
  full, killed = tmp_path / "full", tmp_path / "killed"
  with open(tmp_path / "full.log", "w") as full_log, \
       open(tmp_path / "killed.log", "w") as killed_log:
    reference = subprocess.Popen(train_command(full), cwd=REPO,
                                 stdout=full_log, stderr=subprocess.STDOUT)
    proc = subprocess.Popen(train_command(killed), cwd=REPO,
                            stdout=killed_log, stderr=subprocess.STDOUT)
    try:
      # Kill once the run is past its first checkpoint: it has logged steps
      # after that checkpoint, which a resume must drop and redo.
      deadline = time.monotonic() + 300
      while True:
        saved = checkpoint_steps(killed)
        if saved and max(logged_steps(killed), default=0) > saved[0]:
          break
        assert proc.poll() is None, (
            "the run ended before the kill:\n"
            + (tmp_path / "killed.log").read_text()[-3000:])
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.01)
      proc.send_signal(signal.SIGKILL)
      assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
      if proc.poll() is None:
        proc.kill()
    assert reference.wait(timeout=600) == 0, (tmp_path / "full.log").read_text()
  # The kill came mid-run, after a checkpoint and before the end.
  assert not (killed / "results.json").exists()
  resume_from = max(checkpoint_steps(killed))
  assert CHECKPOINT_EVERY <= resume_from < NUM_STEPS
  assert max(logged_steps(killed)) > resume_from
  # Mark a row the resumed run must keep (a fresh start would rewrite the
  # file): proof that the second run resumed rather than started over.
  path = killed / "metrics.jsonl"
  rows = path.read_text().splitlines()
  rows[0] = json.dumps({**json.loads(rows[0]), "marker": 1})
  path.write_text("\n".join(rows) + "\n")

  resumed = subprocess.run(train_command(killed), cwd=REPO,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]

  rows_killed = metrics_io.read_metrics(str(killed))
  assert rows_killed[0].pop("marker") == 1
  rows_full = metrics_io.read_metrics(str(full))
  assert [r["step"] for r in rows_killed] == [r["step"] for r in rows_full]
  assert rows_killed == rows_full
  assert_bitwise_equal(runs.load_run(str(killed)).meta_params,
                       runs.load_run(str(full)).meta_params)
  results = [json.loads((w / "results.json").read_text())
             for w in (killed, full)]
  assert results[0]["mean"] == results[1]["mean"]
  assert results[0]["ci95"] == results[1]["ci95"]


# ------------------------------------------------------- checkpoint faults


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished smoke run (checkpoints at steps 10 and 20), copied per test."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert checkpoint_steps(workdir) == [10, 20]
  return workdir


def copy_run(finished_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(finished_run, workdir)
  return workdir


def test_crash_mid_save_leaves_the_previous_checkpoint(finished_run, tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  # What a kill during the save of step 20 leaves: orbax's temporary folder,
  # half written, never renamed to "20"; no results.
  step_dir = workdir / "checkpoints" / "20"
  tmp_dir = step_dir.with_name("20" + ocp.utils.TMP_DIR_SUFFIX)
  step_dir.rename(tmp_dir)
  (tmp_dir / "default" / "_METADATA").unlink()
  (tmp_dir / "default" / "manifest.ocdbt").unlink()
  (workdir / "results.json").unlink()

  assert checkpoint_steps(workdir) == [10]
  assert_bitwise_equal(runs.load_run(str(workdir)).meta_params,
                       runs.load_run(str(finished_run), step=10).meta_params)
  # Resuming redoes steps 11..20 and replaces the temporary folder.
  runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert not tmp_dir.exists() and checkpoint_steps(workdir) == [10, 20]
  assert_bitwise_equal(runs.load_run(str(workdir)).meta_params,
                       runs.load_run(str(finished_run)).meta_params)
  assert (metrics_io.read_metrics(str(workdir))
          == metrics_io.read_metrics(str(finished_run)))


def truncate_data(step_dir):
  for path in step_dir.rglob("*"):
    if path.is_file() and path.parent.name == "d":
      with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def overwrite_data(step_dir):
  for path in step_dir.rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(b"\0" * path.stat().st_size)


def truncate_metadata(step_dir):
  path = step_dir / "default" / "_METADATA"
  path.write_bytes(path.read_bytes()[:10])


def empty_folder(step_dir):
  shutil.rmtree(step_dir)
  step_dir.mkdir()


DAMAGE = [truncate_data, overwrite_data, truncate_metadata, empty_folder]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__)
def test_damaged_checkpoint_names_the_problem_and_the_last_good_one(
    finished_run, tmp_path, damage):
  workdir = copy_run(finished_run, tmp_path)
  damage(workdir / "checkpoints" / "20")
  metrics_before = (workdir / "metrics.jsonl").read_bytes()
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    runs.load_run(str(workdir))
  message = str(info.value)
  checkpoints = str(workdir / "checkpoints")
  assert f"step 20 in {checkpoints} is unreadable" in message
  assert "The last good checkpoint is step 10" in message
  assert f"delete {checkpoints}/20 to resume from it" in message
  assert "\n" not in message and len(message) < 1000
  assert (info.value.step, info.value.last_good) == (20, 10)
  # One exception, not a chain of orbax / tensorstore ones.
  assert info.value.__cause__ is None and info.value.__context__ is None
  # Resuming stops with the same error before writing anything.
  with pytest.raises(ckpt_lib.CheckpointError, match="last good checkpoint "
                     "is step 10"):
    runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert (workdir / "metrics.jsonl").read_bytes() == metrics_before
  # Following the advice gives the last good checkpoint.
  shutil.rmtree(workdir / "checkpoints" / "20")
  assert_bitwise_equal(runs.load_run(str(workdir)).meta_params,
                       runs.load_run(str(finished_run), step=10).meta_params)


def test_following_the_advice_resumes_as_the_intact_run(finished_run,
                                                        tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  truncate_data(workdir / "checkpoints" / "20")
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    runs.load_run(str(workdir))
  shutil.rmtree(str(info.value).split("delete ")[1].split(" to resume")[0])
  runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert checkpoint_steps(workdir) == [10, 20]
  assert_bitwise_equal(runs.load_run(str(workdir)).meta_params,
                       runs.load_run(str(finished_run)).meta_params)
  assert (metrics_io.read_metrics(str(workdir))
          == metrics_io.read_metrics(str(finished_run)))


def test_no_readable_checkpoint_says_so(finished_run, tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  truncate_data(workdir / "checkpoints" / "10")
  overwrite_data(workdir / "checkpoints" / "20")
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=r"No earlier checkpoint restores \(steps \[10, 20\]\)"
                     ) as info:
    runs.load_run(str(workdir))
  assert info.value.last_good is None


def test_missing_step_lists_the_steps(finished_run):
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=r"no checkpoint at step 15; it holds steps \[10, 20\]"):
    runs.load_run(str(finished_run), step=15)


def test_binary_reports_a_damaged_checkpoint_without_a_traceback(
    finished_run, tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  truncate_data(workdir / "checkpoints" / "20")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--noprogress",
       "--config=experiments/configs/maml_sinusoid.py:smoke",
       f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "Event loop is closed" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("CheckpointError: The checkpoint at step 20")
  assert "The last good checkpoint is step 10" in last


def sinusoid_learner(hidden):
  return maml(models.MLP(1, hidden=hidden), inner_lr=0.01, inner_steps=1,
              task="regression")


@pytest.mark.parametrize("hidden,outer_opt,expected", [
    pytest.param((8,), optax.adam(1e-3),
     ["meta_params/dense1/kernel", "which this run lacks",
      "meta_params/dense0/kernel is (1, 40) float32 in it but (1, 8) float32 "
      "here"], id="other_model"),
    pytest.param((40, 40), optax.sgd(1e-3),
                 ["it has opt_state/0/count", "which this run lacks"],
                 id="other_optimizer"),
])
def test_checkpoint_of_another_structure_is_named(finished_run, tmp_path,
                                                  hidden, outer_opt, expected):
  # meta_train has no config to compare: the checkpoint's arrays are checked.
  workdir = copy_run(finished_run, tmp_path)
  metrics_before = (workdir / "metrics.jsonl").read_bytes()
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    train_lib.meta_train(sinusoid_learner(hidden),
                         SinusoidSampler(shots=10, queries=10),
                         outer_opt=outer_opt, num_steps=30, meta_batch_size=2,
                         workdir=str(workdir))
  message = str(info.value)
  assert message.startswith(f"The checkpoint at step 20 in {workdir}"
                            "/checkpoints does not fit this run")
  assert "another model or optimizer" in message
  for text in expected:
    assert text in message
  assert info.value.__cause__ is None and info.value.__context__ is None
  assert (workdir / "metrics.jsonl").read_bytes() == metrics_before
  assert checkpoint_steps(workdir) == [10, 20]


def test_damaged_config_json_is_named(finished_run, tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  path = workdir / "config.json"
  path.write_text(path.read_text()[:40])
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    runs.load_run(str(workdir))
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert path.read_text().startswith("{") and len(path.read_text()) == 40


def test_torn_metrics_line_is_dropped_on_resume(tmp_path):
  writer = metrics_io.MetricWriter(str(tmp_path), tensorboard=False)
  for step in (1, 2, 3):
    writer.write(step, {"loss": float(step)})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "lo')  # the process died mid-write
  metrics_io.MetricWriter(str(tmp_path), resume_step=2,
                          tensorboard=False).close()
  assert metrics_io.read_metrics(str(tmp_path)) == [
      {"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]


# ----------------------------------------------------------- numerical faults


class PoisonedSource:
  """Sinusoid tasks whose batch for step `step` (1-based) is replaced.

  The step is recognized from the generator the trainer passes
  (`step_rng(seed, step - 1)`), so it works across resumes. `crash_at`
  raises KeyboardInterrupt when that step's batch is asked for.
  """

  def __init__(self, step, poison, seed=0, crash_at=None):
    self.base = SinusoidSampler(shots=3, queries=3)
    self.step, self.poison, self.seed, self.crash_at = step, poison, seed, crash_at

  def _is(self, rng, step):
    return (step is not None and rng.bit_generator.state
            == step_rng(self.seed, step - 1).bit_generator.state)

  def sample_batch(self, rng, size):
    crash, poison = self._is(rng, self.crash_at), self._is(rng, self.step)
    batch = self.base.sample_batch(rng, size)
    if crash and size > 1:  # not the trainer's one-task init example
      raise KeyboardInterrupt("simulated crash")
    if poison and size > 1:
      return self.poison(batch)
    return batch


def nan_targets(batch):
  return batch._replace(query_y=np.full_like(batch.query_y, np.nan))


def zeros(batch):
  return Episode(*(np.zeros_like(a) for a in batch))


def sqrt_error_learner():
  """y = w x with loss mean(sqrt|w x - y|): 0 at a perfect fit, where its
  gradient is not finite (so only the gradient is)."""
  loss = lambda out, y: jnp.mean(jnp.sqrt(jnp.abs(out - y)))
  return Learner(init=lambda key, episode: {"w": jnp.ones(())},
                 adapt=lambda params, support, key: params["w"],
                 predict=lambda params, w, x: w * x,
                 loss=loss, metric=loss, metric_name="mse")


def train_kwargs(**overrides):
  kwargs = dict(outer_opt=optax.adam(1e-2), num_steps=8, meta_batch_size=4,
                checkpoint_every=2, log_every=1)
  kwargs.update(overrides)
  return kwargs


def test_nonfinite_loss_stops_at_its_step_and_keeps_the_checkpoint(tmp_path):
  learner = sinusoid_learner((8,))
  with pytest.raises(train_lib.NonFiniteError) as info:
    train_lib.meta_train(learner, PoisonedSource(5, nan_targets),
                         workdir=str(tmp_path / "bad"), **train_kwargs())
  message = str(info.value)
  assert message.startswith("Non-finite loss and grad_norm at step 5 "
                            "(loss=nan, grad_norm=nan).")
  assert "The last checkpoint, kept, is step 4." in message
  assert "on_nonfinite='skip'" in message
  # The kept checkpoint is the state after 4 good steps.
  assert checkpoint_steps(tmp_path / "bad") == [2, 4]
  good = train_lib.meta_train(learner, PoisonedSource(5, nan_targets),
                              **train_kwargs(num_steps=4))
  checkpointer = ckpt_lib.Checkpointer(str(tmp_path / "bad"))
  try:
    step, kept = checkpointer.restore(good)
  finally:
    checkpointer.close()
  assert step == 4
  assert_bitwise_equal(kept, good)
  # The metrics file ends with what the trainer saw at step 5.
  rows = metrics_io.read_metrics(str(tmp_path / "bad"))
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
  assert rows[-1]["nonfinite"] == 1.0
  assert math.isnan(rows[-1]["loss"]) and math.isnan(rows[-1]["grad_norm"])
  assert "nonfinite" not in rows[-2] and math.isfinite(rows[-2]["train/loss"])


def test_nonfinite_gradient_alone_is_named(tmp_path):
  with pytest.raises(train_lib.NonFiniteError,
                     match=r"^Non-finite grad_norm at step 3 \(grad_norm=nan\)"):
    train_lib.meta_train(sqrt_error_learner(), PoisonedSource(3, zeros),
                         workdir=str(tmp_path), **train_kwargs())
  row = metrics_io.read_metrics(str(tmp_path))[-1]
  assert row["step"] == 3 and row["nonfinite"] == 1.0
  assert row["loss"] == 0.0 and math.isnan(row["grad_norm"])


def test_nonfinite_without_workdir_says_there_is_no_checkpoint():
  with pytest.raises(train_lib.NonFiniteError,
                     match="at step 1 .*no checkpoint to resume from"):
    train_lib.meta_train(sinusoid_learner((8,)),
                         PoisonedSource(1, nan_targets), **train_kwargs())


def test_skip_drops_exactly_the_nonfinite_step(tmp_path):
  learner = sinusoid_learner((8,))
  source = PoisonedSource(3, nan_targets)
  run = lambda n, **kw: train_lib.meta_train(
      learner, source, **train_kwargs(num_steps=n, on_nonfinite="skip", **kw))
  two, three, four = run(2), run(3, workdir=str(tmp_path)), run(4)
  # Step 3 changed nothing but the step counter; step 4 trained again.
  assert_bitwise_equal(three.meta_params, two.meta_params)
  assert_bitwise_equal(three.opt_state, two.opt_state)
  assert int(three.step) == 3
  assert differs(four.meta_params, three.meta_params)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(four.meta_params))
  rows = metrics_io.read_metrics(str(tmp_path))
  assert [(r["step"], r.get("nonfinite")) for r in rows] == [
      (1, None), (2, None), (3, 1.0)]
  assert checkpoint_steps(tmp_path) == [2, 3]  # the last step is saved anyway


def test_skip_then_crash_and_resume_equals_uninterrupted(tmp_path):
  learner = sinusoid_learner((8,))
  kwargs = train_kwargs(on_nonfinite="skip")
  full = train_lib.meta_train(learner, PoisonedSource(3, nan_targets),
                              workdir=str(tmp_path / "a"), **kwargs)
  with pytest.raises(KeyboardInterrupt):
    train_lib.meta_train(learner, PoisonedSource(3, nan_targets, crash_at=6),
                         workdir=str(tmp_path / "b"), **kwargs)
  assert checkpoint_steps(tmp_path / "b") == [2, 4]
  resumed = train_lib.meta_train(learner, PoisonedSource(3, nan_targets),
                                 workdir=str(tmp_path / "b"), **kwargs)
  assert_bitwise_equal(resumed, full)
  rows = [json.dumps(r) for r in metrics_io.read_metrics(str(tmp_path / "a"))]
  assert rows == [json.dumps(r)
                  for r in metrics_io.read_metrics(str(tmp_path / "b"))]


def test_overflowing_update_is_never_saved(tmp_path):
  # Finite loss and gradient, but a step so large the parameters overflow.
  with pytest.raises(train_lib.NonFiniteError,
                     match=r"^Non-finite meta_params at step 1 \(\d+ of 4 "
                     r"entries are NaN or inf\), not saved. There is no "
                     "checkpoint"):
    train_lib.meta_train(
        maml(models.MLP(1, hidden=(1,)), inner_lr=0.01, inner_steps=1,
             task="regression"),
        SinusoidSampler(shots=3, queries=3), outer_opt=optax.sgd(3e38),
        num_steps=4, meta_batch_size=4, checkpoint_every=1,
        workdir=str(tmp_path))
  assert checkpoint_steps(tmp_path) == []
  row = metrics_io.read_metrics(str(tmp_path))[-1]
  assert row["step"] == 1 and row["nonfinite"] == 1.0
  assert row["nonfinite_meta_params"] >= 1


def test_binary_reports_a_nonfinite_loss_in_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--noprogress",
       "--config=experiments/configs/maml_sinusoid.py:smoke",
       "--config.outer_opt=sgd", "--config.outer_lr=1e30",
       "--config.checkpoint_every=1", f"--workdir={tmp_path}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      "NonFiniteError: Non-finite loss and grad_norm at step 2 (loss=nan, "
      "grad_norm=nan). The last checkpoint, kept, is step 1. Pass "
      "on_nonfinite='skip' (config.on_nonfinite) to drop such steps instead.")
  assert checkpoint_steps(tmp_path) == [1]
  row = metrics_io.read_metrics(str(tmp_path))[-1]
  assert row["step"] == 2 and row["nonfinite"] == 1.0
  assert not (tmp_path / "results.json").exists()


def test_config_chooses_skip(tmp_path):
  config = maml_sinusoid.get_config("smoke")
  config.on_nonfinite = "ignore"
  with pytest.raises(ValueError, match="config.on_nonfinite must be one of "
                     "'raise', 'skip'; got 'ignore'"):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
  config.on_nonfinite = "skip"
  config.num_steps = 2
  results = runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert math.isfinite(results["mean"])


# ------------------------------------------------ property-based: the sampler


@st.composite
def class_sources(draw):
  """A ClassImages whose every image is filled with 16 * class + example."""
  num_classes = draw(st.integers(2, 7))
  dense = draw(st.booleans())
  if dense:
    counts = [draw(st.integers(2, 8))] * num_classes
  else:
    counts = draw(st.lists(st.integers(2, 8), min_size=num_classes,
                           max_size=num_classes))
  shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
  dtype = draw(st.sampled_from([np.uint8, np.float32]))
  images = [np.broadcast_to((16 * c + np.arange(n)).reshape((n,) + (1,) * len(shape)),
                            (n,) + shape).astype(dtype)
            for c, n in enumerate(counts)]
  images = np.stack(images) if dense else images
  return ClassImages(images, [f"c{c}" for c in range(num_classes)]), counts


def decode(x):
  flat = np.asarray(x, np.int64).reshape(len(x), -1)
  assert (flat == flat[:, :1]).all()  # every pixel of an image is its id
  return flat[:, 0] // 16, flat[:, 0] % 16


@PROPERTY
@given(data=st.data())
def test_sampler_properties(data):
  classes, counts = data.draw(class_sources())
  ways = data.draw(st.integers(2, len(counts)))
  shots = data.draw(st.integers(1, min(counts) - 1))
  queries = data.draw(st.integers(1, min(counts) - shots))
  seed = data.draw(st.integers(0, 2**32 - 1))
  sampler = EpisodeSampler(classes, ways=ways, shots=shots, queries=queries)
  ep = sampler.sample(np.random.default_rng(seed))
  shape = np.asarray(classes.images[0]).shape[1:]
  assert ep.support_x.shape == (ways * shots,) + shape
  assert ep.query_x.shape == (ways * queries,) + shape
  assert ep.support_x.dtype == ep.query_x.dtype == np.asarray(
      classes.images[0]).dtype
  assert ep.support_y.dtype == ep.query_y.dtype == np.int32
  # Labels 0..ways-1, each exactly `shots` (`queries`) times.
  assert np.bincount(ep.support_y, minlength=ways).tolist() == [shots] * ways
  assert np.bincount(ep.query_y, minlength=ways).tolist() == [queries] * ways
  s_class, s_example = decode(ep.support_x)
  q_class, q_example = decode(ep.query_x)
  # One class per label, the same in support and query; labels distinct.
  label_class = {}
  for c, y in zip(np.concatenate([s_class, q_class]),
                  np.concatenate([ep.support_y, ep.query_y])):
    assert label_class.setdefault(int(y), int(c)) == c
  assert len(set(label_class.values())) == ways
  # Every image exists in the class its label names.
  for c, e in zip(np.concatenate([s_class, q_class]),
                  np.concatenate([s_example, q_example])):
    assert 0 <= c < len(counts) and 0 <= e < counts[c]
  # No image twice: support and query are disjoint.
  ids = np.concatenate([16 * s_class + s_example, 16 * q_class + q_example])
  assert len(set(ids.tolist())) == len(ids)
  batch = sampler.sample_batch(np.random.default_rng(seed), 3)
  assert batch.support_x.shape == (3, ways * shots) + shape
  assert batch.query_y.shape == (3, ways * queries)


@PROPERTY
@given(data=st.data())
def test_sampler_rejects_every_invalid_setting(data):
  classes, counts = data.draw(class_sources())
  problem = data.draw(st.sampled_from(
      ["ways_low", "too_many_ways", "shots_low", "queries_low", "too_few"]))
  ways, shots, queries = 2, 1, 1
  if problem == "ways_low":
    ways = data.draw(st.integers(-3, 1))
  elif problem == "too_many_ways":
    ways = data.draw(st.integers(len(counts) + 1, len(counts) + 5))
  elif problem == "shots_low":
    shots = data.draw(st.integers(-3, 0))
  elif problem == "queries_low":
    queries = data.draw(st.integers(-3, 0))
  else:
    shots = data.draw(st.integers(1, min(counts)))
    queries = min(counts) - shots + data.draw(st.integers(1, 3))
  with pytest.raises(ValueError, match="ways|shots|queries"):
    EpisodeSampler(classes, ways=ways, shots=shots, queries=queries)


# ------------------------------------- property-based: evaluation statistics

FINITE = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def reference_ci(values):
  n = len(values)
  mean = math.fsum(values) / n
  return 1.96 * math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n) / math.sqrt(n)


@PROPERTY
@given(st.lists(FINITE, min_size=1, max_size=60))
def test_ci_is_196_std_over_sqrt_n(values):
  assert eval_lib.confidence_interval(values) == pytest.approx(
      reference_ci(values), rel=1e-9, abs=1e-9)


@PROPERTY
@given(FINITE, st.integers(1, 60))
def test_ci_of_constant_values_is_zero(value, n):
  assert eval_lib.confidence_interval([value] * n) == pytest.approx(
      0.0, abs=1e-12 * max(1.0, abs(value)))


@PROPERTY
@given(st.lists(FINITE, min_size=1, max_size=60), FINITE,
       st.floats(-100, 100, allow_nan=False))
def test_ci_ignores_shifts_and_scales_linearly(values, shift, scale):
  ci = eval_lib.confidence_interval(values)
  shifted = eval_lib.confidence_interval([v + shift for v in values])
  scaled = eval_lib.confidence_interval([v * scale for v in values])
  assert shifted == pytest.approx(ci, rel=1e-6, abs=1e-9)
  assert scaled == pytest.approx(abs(scale) * ci, rel=1e-6, abs=1e-9)


def test_ci_rejects_empty_input():
  with pytest.raises(ValueError, match="at least one value"):
    eval_lib.confidence_interval([])


def zero_regressor():
  """Predicts 0, so an episode's MSE is the mean of its squared targets."""
  mse = lambda out, y: jnp.mean(jnp.square(out - y))
  return Learner(init=lambda key, episode: {"b": jnp.zeros(())},
                 adapt=lambda params, support, key: params["b"],
                 predict=lambda params, b, x: jnp.zeros_like(x) + b,
                 loss=mse, metric=mse, metric_name="mse")


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 40), st.integers(1, 16), st.integers(0, 100))
def test_evaluate_statistics(episodes, batch_size, seed):
  source = SinusoidSampler(shots=2, queries=3)
  result = eval_lib.evaluate(zero_regressor(), {"b": jnp.zeros(())}, source,
                             episodes=episodes, batch_size=batch_size,
                             seed=seed)
  # Independently: batch i of min(batch_size, episodes) tasks comes from
  # step_rng(seed, i); each task's MSE is mean(query_y ** 2).
  size = min(batch_size, episodes)
  expected = np.concatenate([
      np.mean(np.square(source.sample_batch(step_rng(seed, i), size).query_y
                        .astype(np.float64)), axis=(1, 2))
      for i in range(-(-episodes // size))])[:episodes]
  assert result.episodes == episodes and result.values.shape == (episodes,)
  np.testing.assert_allclose(result.values, expected, rtol=1e-5)
  assert result.mean == pytest.approx(np.mean(expected), rel=1e-5)
  assert result.ci95 == pytest.approx(reference_ci(list(result.values)),
                                      rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("kwargs", [dict(episodes=0), dict(batch_size=0)],
                         ids=["episodes=0", "batch_size=0"])
def test_evaluate_rejects_bad_counts(kwargs):
  args = dict(episodes=5, batch_size=5)
  args.update(kwargs)
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    eval_lib.evaluate(zero_regressor(), {"b": jnp.zeros(())},
                      SinusoidSampler(shots=1, queries=1), **args)


# -------------------------------------------------------- config validation


def embedding_config(learner):
  module = importlib.import_module(f"experiments.configs.{learner}_omniglot")
  return module.get_config("smoke")


SINUSOID = lambda: maml_sinusoid.get_config("smoke")
OMNIGLOT = lambda: maml_omniglot.get_config("smoke")
EMBEDDING = lambda name: lambda: embedding_config(name)
BAD_FIELDS = [
    # (base config, field (a.b: option b of a), bad value, expected message)
    (SINUSOID, "model", "resnet", r"config.model must be one of 'conv4', 'mlp'"),
    (SINUSOID, "learner", "mamll", r"config.learner must be one of .*'maml'"),
    (SINUSOID, "dataset", "mnist", r"config.dataset must be one of 'sinusoid', "
     "'omniglot', 'cifar_fs'"),
    (OMNIGLOT, "test_ways", 1, "config.test_ways must be None or an integer "
     ">= 2, got 1"),
    (OMNIGLOT, "test_shots", 0, "config.test_shots must be None or an integer "
     ">= 1, got 0"),
    (SINUSOID, "queries", 0, "config.queries must be an integer >= 1, got 0"),
    (OMNIGLOT, "test_queries", 0, "config.test_queries must be None or an "
     "integer >= 1"),
    (SINUSOID, "inner_steps", -1, "inner_steps must be an integer >= 0, got -1"),
    (OMNIGLOT, "test_inner_steps", -1, "inner_steps must be an integer >= 0, "
     "got -1"),
    (SINUSOID, "inner_lr", 0.0, "inner_lr must be a finite number > 0, got 0.0"),
    (SINUSOID, "inner_lr", float("nan"), "inner_lr must be a finite number > 0, "
     "got nan"),
    (SINUSOID, "inner_lr", float("inf"), "config.learner='maml': inner_lr must "
     "be a finite number > 0, got inf"),
    (SINUSOID, "learner_kwargs.first_order_steps", -1,
     "first_order_steps must be an integer >= 0, got -1"),
    (SINUSOID, "outer_lr", 0.0, "config.outer_lr must be a finite number > 0, "
     "got 0.0"),
    (SINUSOID, "outer_lr", float("inf"), "config.outer_lr must be a finite "
     "number > 0, got inf"),
    (SINUSOID, "outer_opt", "rmsprop", "config.outer_opt must be one of "
     "'adam', 'sgd'"),
    (SINUSOID, "outer_lr_schedule", "cosine", "config.outer_lr_schedule must "
     "be one of 'constant', 'linear_decay'"),
    (SINUSOID, "num_steps", -1, "config.num_steps must be an integer >= 0"),
    (SINUSOID, "eval_episodes", 0, "config.eval_episodes must be an integer "
     ">= 1"),
    (SINUSOID, "seed", -1, "config.seed must be an integer >= 0, got -1"),
    (SINUSOID, "checkpoint_every", 0, "config.checkpoint_every must be an "
     "integer >= 1"),
    (SINUSOID, "log_every", 0, "config.log_every must be an integer >= 1"),
    (SINUSOID, "val_every", -1, "config.val_every must be an integer >= 0"),
    (SINUSOID, "val_episodes", 0, "config.val_episodes must be an integer "
     ">= 1"),
    (SINUSOID, "model_kwargs.hidden", (40, 0), "config.model='mlp' with "
     "config.model_kwargs: each width of hidden must be an integer >= 1, "
     "got 0"),
    (OMNIGLOT, "model_kwargs.filters", 0, "filters must be an integer >= 1"),
    (OMNIGLOT, "model_kwargs.pooling", "avg", "pooling must be one of "
     "'stride', 'max'; got 'avg'"),
    (OMNIGLOT, "model_kwargs.conv_impl", "cudnn", "conv_impl must be one of "
     "'patches', 'xla'"),
    (OMNIGLOT, "model_kwargs.compute_dtype", "float16", "compute_dtype must be "
     "one of 'float32', 'bfloat16'"),
    (SINUSOID, "tasks_per_chunk", 0, "config.tasks_per_chunk must be None or "
     "an integer >= 1"),
    (SINUSOID, "num_devices", 0, "config.num_devices must be None or an "
     "integer >= 1"),
    (EMBEDDING("protonet"), "learner_kwargs.distance", "manhattan",
     "distance must be one of 'euclidean', 'cosine'; got 'manhattan'"),
    (EMBEDDING("protonet"), "learner_kwargs.scale", 0.0,
     "scale must be a finite number > 0, got 0.0"),
    (EMBEDDING("matching_net"), "learner_kwargs.read_steps", 0,
     "read_steps must be an integer >= 1, got 0"),
    (EMBEDDING("baseline"), "batch_size", 0,
     "config.batch_size must be None or an integer >= 1"),
    (EMBEDDING("baseline"), "num_classes", 1,
     "config.num_classes must be None or an integer >= 2"),
    (EMBEDDING("baseline"), "learner_kwargs.finetune_lr", -1.0,
     "finetune_lr must be a finite number > 0, got -1.0"),
    (EMBEDDING("baseline"), "learner_kwargs.transductive_steps", -1,
     "transductive_steps must be an integer >= 0, got -1"),
    (EMBEDDING("baseline"), "learner_kwargs.transductive_lr", 0.0,
     "transductive_lr must be a finite number > 0, got 0.0"),
    (EMBEDDING("baseline"), "learner_kwargs.finetune_weight_decay", -1.0,
     "finetune_weight_decay must be a finite number >= 0"),
]


def set_field(config, field, value):
  """config.<field> = value, for "name" or "kwargs_field.option"."""
  *parent, name = field.split(".")
  target = config[parent[0]] if parent else config
  with target.ignore_type():
    target[name] = value


@pytest.mark.parametrize("base,field,value,match", BAD_FIELDS,
                         ids=[f"{f}={v}" for _, f, v, _ in BAD_FIELDS])
def test_bad_config_field_fails_before_writing(tmp_path, base, field, value,
                                               match):
  config = base()
  from_config.validate(config)  # the base is valid: the field alone is at fault
  set_field(config, field, value)
  with pytest.raises(ValueError, match=match):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("changes,match", [
    (dict(image_size=14, **{"model_kwargs.pooling": "max"}),
     "too small for four 'max' downsamplings"),
    ({"learner_kwargs.lslr": True, "inner_steps": 0},
     "lslr learns one inner rate per inner step; it needs inner_steps >= 1, "
     "got 0"),
], ids=["max_pool_image_size=14", "lslr_inner_steps=0"])
def test_bad_field_combinations_fail_before_writing(tmp_path, changes, match):
  config = OMNIGLOT()
  for field, value in changes.items():
    set_field(config, field, value)
  with pytest.raises(ValueError, match=match):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_too_few_examples_for_shots_and_queries(tmp_path, omniglot_data_dir):
  config = OMNIGLOT()
  config.data_dir = omniglot_data_dir
  config.shots, config.queries = 10, 11  # Omniglot has 20 per character
  with pytest.raises(ValueError, match="shots \\+ queries = 21 but the "
                     "smallest class of this split has only 20 examples"):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


CONFIG_FILES = sorted(p.stem for p in (REPO / "experiments" / "configs").glob("*.py")
                      if not p.name.startswith("_"))


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_lists_its_variants_on_a_bad_one(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  module.get_config("smoke")  # exists for every config
  with pytest.raises(ValueError, match=r"(?i)unknown variant 'k7w3s'.*valid.*smoke"):
    module.get_config("k7w3s")


def run_binary(*args):
  return subprocess.run(
      [sys.executable, "-m", "experiments.train", "--noprogress", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args,expected", [
    (["--config=experiments/configs/maml_sinusoid.py:smoke",
      "--config.shots=0"],
     "Invalid config: config.shots must be an integer >= 1, got 0."),
    (["--config=experiments/configs/mamll_sinusoid.py:smoke"],
     "--config=experiments/configs/mamll_sinusoid.py:smoke: no such file. "
     "Valid configs (add ':variant'): experiments/configs/anil_omniglot.py,"),
    (["--config=experiments/configs/maml_sinusoid.py:smoke",
      "--config.inner_lrr=0.1"],
     "the config has no field 'inner_lrr' (did you mean 'inner_lr'?); its "
     "fields: checkpoint_every,"),
    (["--config=experiments/configs/maml_sinusoid.py:k7"],
     "--config=experiments/configs/maml_sinusoid.py:k7: Unknown variant 'k7' "
     "of maml_sinusoid; valid: '', 'smoke'"),
], ids=["invalid_value", "unknown_config_file", "unknown_field",
        "unknown_variant"])
def test_binary_bad_input_is_one_line_without_writing(tmp_path, args, expected):
  proc = run_binary(*args, f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert expected in proc.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "w").exists()


# --------------------------------------------- public entries: bad arguments


@pytest.mark.parametrize("kwargs,match", [
    (dict(checkpoint_every=0), "checkpoint_every must be an integer >= 1"),
    (dict(log_every=0), "log_every must be an integer >= 1"),
    (dict(val_every=-1), "val_every must be an integer >= 0"),
    (dict(val_episodes=0), "val_episodes must be an integer >= 1"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(num_steps=2.5), "num_steps must be an integer"),
], ids=["checkpoint_every=0", "log_every=0", "val_every=-1", "val_episodes=0",
        "seed=-1", "num_steps=2.5"])
def test_meta_train_bad_arguments_write_nothing(tmp_path, kwargs, match):
  args = dict(outer_opt=optax.sgd(0.1), num_steps=2, meta_batch_size=2,
              workdir=str(tmp_path / "w"))
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train_lib.meta_train(sinusoid_learner((8,)),
                         SinusoidSampler(shots=2, queries=2), **args)
  assert not (tmp_path / "w").exists()


class Flatten(nn.Module):
  """A parameter-free embedding."""

  @nn.compact
  def __call__(self, x):
    return x.reshape(x.shape[0], -1).astype(jnp.float32)


@pytest.mark.parametrize("factory,match", [
    (lambda: meta_sgd(models.MLP(1), inner_lr=0.0),
     "inner_lr must be a finite number > 0"),
    (lambda: reptile(models.MLP(1), inner_lr=-1.0),
     "inner_lr must be a finite number > 0"),
    (lambda: reptile(models.MLP(1), inner_steps=-1), "inner_steps must be"),
    (lambda: maml(models.MLP(1), multi_step_loss=[1.0, 1.0], inner_steps=1),
     r"multi_step_loss needs one weight per inner step \(1\), got 2"),
    (lambda: maml(models.MLP(1), inner_opt=optax.sgd(0.1),
                  inner_opt_fn=lambda h: optax.sgd(h), inner_hparams=0.1),
     "either inner_opt .* or inner_opt_fn"),
    (lambda: maml(models.MLP(1), inner_opt_fn=lambda h: optax.sgd(h)),
     "inner_opt_fn needs inner_hparams"),
    (lambda: protonet(Flatten(), ways=2, scale=0.0),
     "scale must be a finite number > 0"),
    (lambda: baseline(Flatten(), num_classes=3, ways=1), "ways must be"),
    (lambda: baseline(Flatten(), num_classes=3, ways=2, transductive_steps=-1),
     "transductive_steps must be"),
    (lambda: baseline(Flatten(), num_classes=3, ways=2, entropy_weight=-1.0),
     "entropy_weight must be a finite number >= 0"),
], ids=["meta_sgd_inner_lr", "reptile_inner_lr", "reptile_inner_steps",
        "maml_multi_step_loss", "maml_two_inner_opts", "maml_no_inner_hparams",
        "protonet_scale", "baseline_ways", "baseline_transductive_steps",
        "baseline_entropy_weight"])
def test_learner_factories_reject_bad_arguments(factory, match):
  with pytest.raises(ValueError, match=match):
    factory()


def uint8_classes(num_classes=4, per_class=5, shape=(3, 3, 1)):
  return [np.zeros((per_class,) + shape, np.uint8) for _ in range(num_classes)]


@pytest.mark.parametrize("images,match", [
    (uint8_classes()[:3] + [np.zeros((5, 4, 3, 1), np.uint8)],
     r"class 3 \('c3'\) has examples of shape \(4, 3, 1\) and dtype uint8, "
     r"but class 0 \('c0'\) has \(3, 3, 1\) and uint8"),
    (uint8_classes()[:3] + [np.zeros((5, 3, 3, 1), np.float32)],
     "class 3 .* dtype float32, but class 0 .* uint8"),
    ([np.zeros((5, 3, 3, 1), np.int64)] * 4, "dtype int64; use uint8"),
    ([np.zeros((5, 3, 3, 1), np.float32)] * 3
     + [np.full((5, 3, 3, 1), np.nan, np.float32)],
     r"NaN or infinite values \(class 3 \('c3'\)\)"),
    (np.full((4, 5, 3, 3, 1), np.inf, np.float32), "NaN or infinite"),
    (uint8_classes()[:3] + [[[0, 1]] * 5], r"class 3 \('c3'\) must be an array"),
    (np.zeros((4, 5), np.uint8), r"must be \[num_classes, n, \*shape\]"),
], ids=["other_shape", "other_dtype", "int64", "nan_class", "inf_dense",
        "not_an_array", "dense_2d"])
@pytest.mark.parametrize("sampler", ["episodes", "batches"])
def test_samplers_reject_malformed_sources(images, match, sampler):
  classes = ClassImages(images, [f"c{i}" for i in range(len(images))])
  with pytest.raises(ValueError, match=match):
    if sampler == "episodes":
      EpisodeSampler(classes, ways=2, shots=1, queries=1)
    else:
      ClassBatchSampler(classes, batch_size=4)


def test_samplers_reject_bad_sizes():
  classes = ClassImages(uint8_classes(), [f"c{i}" for i in range(4)])
  with pytest.raises(ValueError, match="ways must be an integer >= 2, got 2.5"):
    EpisodeSampler(classes, ways=2.5, shots=1, queries=1)
  with pytest.raises(ValueError, match="meta_batch_size must be an integer"):
    EpisodeSampler(classes, ways=2, shots=1, queries=1).sample_batch(
        np.random.default_rng(0), 0)
  with pytest.raises(ValueError, match="at least 2 classes, got 1"):
    ClassBatchSampler(ClassImages(uint8_classes(1), ["c0"]), batch_size=4)
  with pytest.raises(ValueError, match="meta_batch_size must be an integer"):
    ClassBatchSampler(classes, batch_size=4).sample_batch(
        np.random.default_rng(0), 0)


@pytest.fixture(scope="module")
def classifier_run():
  """An untrained ProtoNet run, 5-way at test time, 14x14 images."""
  config = protonet_omniglot.get_config("smoke")
  learner = from_config.build_learner(config, test=True)
  size = config.image_size
  example = Episode(np.zeros((2, size, size, 1), np.uint8), np.arange(2),
                    np.zeros((2, size, size, 1), np.uint8), np.arange(2))
  params = from_config.build_learner(config).init(jax.random.key(0), example)
  return runs.Run(config=config, learner=learner, meta_params=params)


def test_predict_accepts_valid_classification_input(classifier_run):
  ways, size = from_config.test_value(classifier_run.config, "ways"), 14
  x = np.random.default_rng(0).integers(0, 256, (ways, size, size, 1), np.uint8)
  logits = runs.predict(classifier_run, x, np.arange(ways), x[:3])
  assert logits.shape == (3, ways) and np.isfinite(logits).all()


def image_args(ways=5, size=14, **changes):
  rng = np.random.default_rng(0)
  args = dict(support_x=rng.integers(0, 256, (ways, size, size, 1), np.uint8),
              support_y=np.arange(ways), query_x=rng.random((2, size, size, 1)))
  args.update({k: v(args) if callable(v) else v for k, v in changes.items()})
  return args


@pytest.mark.parametrize("changes,match", [
    (dict(support_x=lambda a: a["support_x"][..., 0]),
     r"support_x has shape \(5, 14, 14\); this run expects \[n, 14, 14, 1\]"),
    (dict(query_x=np.zeros((2, 28, 28, 1), np.float32)),
     r"query_x has shape \(2, 28, 28, 1\); this run expects \[n, 14, 14, 1\]"),
    (dict(support_y=np.arange(4)), r"support_y has shape \(4,\) but support_x "
     "has 5 rows"),
    (dict(support_y=np.arange(5)[:, None]), r"support_y has shape \(5, 1\); "
     r"this run expects \[n\] labels"),
    (dict(support_y=np.arange(5) + 2), r"labels must lie in 0..4 for this "
     r"5-way run; got \[2, 3, 4, 5, 6\]"),
    (dict(support_y=np.arange(5) - 1), "labels must lie in 0..4"),
    (dict(support_y=np.arange(5.0)), "support_y must hold integer labels, got "
     "float64"),
    (dict(query_x=np.full((2, 14, 14, 1), np.nan)), "query_x holds NaN"),
    (dict(support_x=lambda a: a["support_x"].astype(np.int64)),
     "support_x has dtype int64; use uint8 or float"),
    (dict(support_x=np.zeros((0, 14, 14, 1), np.uint8),
          support_y=np.zeros((0,), np.int64)), "support_x is empty"),
], ids=["support_x_shape", "query_x_shape", "support_y_rows", "support_y_2d",
        "labels_above", "labels_below", "float_labels", "nan_query",
        "int64_pixels", "empty_support"])
def test_predict_rejects_bad_classification_input(classifier_run, changes,
                                                  match):
  with pytest.raises(ValueError, match=match):
    runs.predict(classifier_run, **image_args(**changes))


@pytest.mark.parametrize("changes,match", [
    (dict(support_y=np.zeros((5, 2))), r"support_y has shape \(5, 2\); this "
     r"run expects \[n\] or \[n, 1\] targets"),
    (dict(support_y=np.full((5, 1), np.nan)), "support_y holds NaN"),
    (dict(support_x=np.full((5, 1), np.inf)), "support_x holds NaN or infinite"),
    (dict(support_x=np.zeros((5, 2))), r"support_x has shape \(5, 2\); this "
     r"run expects \[n, 1\]"),
], ids=["targets_2_columns", "nan_targets", "inf_inputs", "input_shape"])
def test_predict_rejects_bad_regression_input(finished_run, changes, match):
  run = runs.load_run(str(finished_run))
  args = dict(support_x=np.linspace(-3, 3, 5)[:, None],
              support_y=np.sin(np.linspace(-3, 3, 5)), query_x=np.zeros((2, 1)))
  assert runs.predict(run, **args).shape == (2, 1)
  args.update(changes)
  with pytest.raises(ValueError, match=match):
    runs.predict(run, **args)


def test_load_run_of_a_folder_without_a_run(tmp_path):
  with pytest.raises(ValueError, match="holds no run"):
    runs.load_run(str(tmp_path))
  (tmp_path / "config.json").write_text(
      maml_sinusoid.get_config("smoke").to_json())
  with pytest.raises(ValueError, match="holds no checkpoint"):
    runs.load_run(str(tmp_path))


# ------------------------------------------------------ the docs' table


def test_every_row_of_the_reliability_table_names_existing_tests():
  text = (REPO / "docs" / "reliability.md").read_text()
  rows = [line for line in text.splitlines()
          if line.startswith("| ") and not line.startswith("| ---")
          and not line.startswith(("| input tried", "| fault tried",
                                   "| property |"))]
  assert len(rows) > 50
  refs = []
  for row in rows:
    cell = row.rstrip(" |").split(" | ")[-1]
    found, last = [], None
    for token in re.findall(r"`([^`]+)`", cell):
      named = re.fullmatch(r"(R|[a-z_]+\.py)::(test_\w+)(\[.*\])?", token)
      if named:
        last = named.group(1), named.group(2)
        found.append((*last, named.group(3) or ""))
      elif re.fullmatch(r"\[.*\]", token) and last:
        found.append((*last, token))
    assert found, f"row without a test: {row}"
    refs += found
  ids = subprocess.run(
      [sys.executable, "-m", "pytest", "--collect-only", "-q",
       "-p", "no:cacheprovider", "tests/"], cwd=REPO, capture_output=True,
      text=True, timeout=600).stdout.splitlines()
  for file, name, case in refs:
    file = "test_reliability.py" if file == "R" else file
    prefix = f"tests/{file}::{name}"
    matching = [i for i in ids if i == prefix or i.startswith(prefix + "[")]
    assert matching, f"{prefix} is not a test"
    if case and "*" not in case and "..." not in case:
      assert f"{prefix}{case}" in ids, f"{prefix}{case} is not a test"
