"""Checkpoint faults: a crash mid-save, damaged, missing or foreign
checkpoints, a damaged config.json.

Each test backs a row of docs/reliability.md. The finished run the tests
copy is conftest's `finished_run`.
"""

import shutil
import subprocess
import sys

import optax
import orbax.checkpoint as ocp
import pytest

from experiments.configs import maml_sinusoid
from metajax import checkpoint as ckpt_lib
from metajax import metrics_io
from metajax import runs
from metajax import train as train_lib
from metajax.data.sinusoid import SinusoidSampler
from tests.conftest import REPO
from tests.helpers import (
  assert_bitwise_equal,
  checkpoint_steps,
  sinusoid_learner,
)


# ------------------------------------------------------- checkpoint faults


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
  assert_bitwise_equal(
    runs.load_run(str(workdir)).meta_params,
    runs.load_run(str(finished_run), step=10).meta_params,
  )
  # Resuming redoes steps 11..20 and replaces the temporary folder.
  runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert not tmp_dir.exists() and checkpoint_steps(workdir) == [10, 20]
  assert_bitwise_equal(
    runs.load_run(str(workdir)).meta_params,
    runs.load_run(str(finished_run)).meta_params,
  )
  assert metrics_io.read_metrics(str(workdir)) == metrics_io.read_metrics(
    str(finished_run)
  )


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
  finished_run, tmp_path, damage
):
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
  with pytest.raises(
    ckpt_lib.CheckpointError, match="last good checkpoint is step 10"
  ):
    runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert (workdir / "metrics.jsonl").read_bytes() == metrics_before
  # Following the advice gives the last good checkpoint.
  shutil.rmtree(workdir / "checkpoints" / "20")
  assert_bitwise_equal(
    runs.load_run(str(workdir)).meta_params,
    runs.load_run(str(finished_run), step=10).meta_params,
  )


def test_following_the_advice_resumes_as_the_intact_run(finished_run, tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  truncate_data(workdir / "checkpoints" / "20")
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    runs.load_run(str(workdir))
  shutil.rmtree(str(info.value).split("delete ")[1].split(" to resume")[0])
  runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert checkpoint_steps(workdir) == [10, 20]
  assert_bitwise_equal(
    runs.load_run(str(workdir)).meta_params,
    runs.load_run(str(finished_run)).meta_params,
  )
  assert metrics_io.read_metrics(str(workdir)) == metrics_io.read_metrics(
    str(finished_run)
  )


def test_no_readable_checkpoint_says_so(finished_run, tmp_path):
  workdir = copy_run(finished_run, tmp_path)
  truncate_data(workdir / "checkpoints" / "10")
  overwrite_data(workdir / "checkpoints" / "20")
  with pytest.raises(
    ckpt_lib.CheckpointError,
    match=r"No earlier checkpoint restores \(steps \[10, 20\]\)",
  ) as info:
    runs.load_run(str(workdir))
  assert info.value.last_good is None


def test_missing_step_lists_the_steps(finished_run):
  with pytest.raises(
    ckpt_lib.CheckpointError,
    match=r"no checkpoint at step 15; it holds steps \[10, 20\]",
  ):
    runs.load_run(str(finished_run), step=15)


def test_binary_reports_a_damaged_checkpoint_without_a_traceback(
  finished_run, tmp_path
):
  workdir = copy_run(finished_run, tmp_path)
  truncate_data(workdir / "checkpoints" / "20")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--noprogress",
      "--config=experiments/configs/maml_sinusoid.py:smoke",
      f"--workdir={workdir}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert "Event loop is closed" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("CheckpointError: The checkpoint at step 20")
  assert "The last good checkpoint is step 10" in last


@pytest.mark.parametrize(
  "hidden,outer_opt,expected",
  [
    pytest.param(
      (8,),
      optax.adam(1e-3),
      [
        "meta_params/dense1/kernel",
        "which this run lacks",
        "meta_params/dense0/kernel is (1, 40) float32 in it but (1, 8) float32 "
        "here",
      ],
      id="other_model",
    ),
    pytest.param(
      (40, 40),
      optax.sgd(1e-3),
      ["it has opt_state/0/count", "which this run lacks"],
      id="other_optimizer",
    ),
  ],
)
def test_checkpoint_of_another_structure_is_named(
  finished_run, tmp_path, hidden, outer_opt, expected
):
  # meta_train has no config to compare: the checkpoint's arrays are checked.
  workdir = copy_run(finished_run, tmp_path)
  metrics_before = (workdir / "metrics.jsonl").read_bytes()
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    train_lib.meta_train(
      sinusoid_learner(hidden),
      SinusoidSampler(shots=10, queries=10),
      outer_opt=outer_opt,
      num_steps=30,
      meta_batch_size=2,
      workdir=str(workdir),
    )
  message = str(info.value)
  assert message.startswith(
    f"The checkpoint at step 20 in {workdir}/checkpoints does not fit this run"
  )
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
