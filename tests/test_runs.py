"""Configs, the experiment binary end to end, and loading a finished run."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from experiments.configs import maml_omniglot
from experiments.configs import maml_sinusoid
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs
from tests.conftest import REPO


def run_binary(*args, env=None):
  return subprocess.run(
    [sys.executable, "-m", "experiments.train", "--noprogress", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, **(env or {})},
  )


def test_sinusoid_smoke_end_to_end_and_load(tmp_path):
  workdir = tmp_path / "run"
  proc = run_binary(
    "--config=experiments/configs/maml_sinusoid.py:smoke",
    f"--workdir={workdir}",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["metric"] == "mse" and results["episodes"] == 20
  assert results["mean"] > 0 and results["ci95"] > 0
  assert json.loads(proc.stdout.splitlines()[0])["mean"] == results["mean"]
  assert (workdir / "metrics.jsonl").exists()
  assert any(
    p.name.startswith("events") for p in (workdir / "tensorboard").iterdir()
  )

  run = runs.load_run(str(workdir))
  assert run.config.num_steps == 20
  rng = np.random.default_rng(0)
  x = rng.uniform(-5, 5, (5, 1)).astype(np.float32)
  y = np.sin(x)
  out = runs.predict(run, x, y, x)
  assert out.shape == (5, 1) and np.isfinite(out).all()
  # The loaded run is the trained one: it reproduces results.json.
  config = run.config
  result = eval_lib.evaluate(
    run.learner,
    run.meta_params,
    from_config.build_sources(config)["test"],
    episodes=config.eval_episodes,
    seed=from_config.test_seed(config),
  )
  assert result.mean == pytest.approx(results["mean"], rel=1e-5)
  with pytest.raises(ValueError, match="support_x has shape"):
    runs.predict(run, x[:, :, None], y, x)
  # Re-evaluation with other test settings; the run's own reproduces results.
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.evaluate",
      f"--workdir={workdir}",
      "--test_inner_steps=0,1",
      "--test_shots=10",
      "--episodes=20",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(l) for l in proc.stdout.splitlines()]
  assert [(l["test_inner_steps"], l["test_shots"]) for l in lines] == [
    (0, 10),
    (1, 10),
  ]
  assert lines[1]["mean"] == pytest.approx(results["mean"], rel=1e-5)
  assert lines[0]["mean"] != pytest.approx(lines[1]["mean"])
  # --split=val: the validation classes and episodes; with the run's
  # val_episodes it reproduces the last validation logged in training.
  logged = [
    json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  last_val = [r for r in logged if "val/mse" in r][-1]
  assert last_val["step"] == config.num_steps
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.evaluate",
      f"--workdir={workdir}",
      "--split=val",
      f"--episodes={config.val_episodes}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  (line,) = [json.loads(l) for l in proc.stdout.splitlines()]
  assert line["split"] == "val"
  assert line["mean"] == pytest.approx(last_val["val/mse"], rel=1e-5)
  assert line["mean"] != pytest.approx(results["mean"])
  with pytest.raises(ValueError, match="NaN"):
    runs.predict(run, np.full_like(x, np.nan), y, x)


def test_omniglot_smoke_end_to_end_and_predict(tmp_path, omniglot_data_dir):
  workdir = tmp_path / "run"
  proc = run_binary(
    "--config=experiments/configs/maml_omniglot.py:smoke",
    f"--workdir={workdir}",
    env={"METAJAX_DATA_DIR": omniglot_data_dir},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["metric"] == "accuracy" and 0 <= results["mean"] <= 1
  run = runs.load_run(str(workdir))
  size = run.config.image_size
  rng = np.random.default_rng(0)
  support = rng.integers(0, 256, (5, size, size, 1), np.uint8)
  logits = runs.predict(run, support, np.arange(5), support[:3])
  assert logits.shape == (3, 5)
  with pytest.raises(ValueError, match="labels must lie in 0..4"):
    runs.predict(run, support, np.arange(1, 6), support)
  with pytest.raises(ValueError, match="dtype int64"):
    runs.predict(run, support.astype(np.int64), np.arange(5), support)


def test_resume_continues_a_finished_run(tmp_path):
  config = maml_sinusoid.get_config("smoke")
  config.num_steps = 10
  runs.train_and_evaluate(config, str(tmp_path))
  first = runs.load_run(str(tmp_path)).meta_params
  config.num_steps = 20
  runs.train_and_evaluate(config, str(tmp_path))
  fresh_dir = tmp_path / "fresh"
  runs.train_and_evaluate(config, str(fresh_dir))
  chex.assert_trees_all_equal(
    runs.load_run(str(tmp_path)).meta_params,
    runs.load_run(str(fresh_dir)).meta_params,
  )
  assert not all(
    np.array_equal(a, b)
    for a, b in zip(
      *(
        map(np.asarray, jax.tree.leaves(t))
        for t in (first, runs.load_run(str(tmp_path)).meta_params)
      )
    )
  )


def test_a_decayed_run_refuses_another_num_steps(tmp_path):
  config = maml_sinusoid.get_config("smoke")
  config.outer_lr_schedule = "linear_decay"
  config.num_steps = 4
  runs.train_and_evaluate(config, str(tmp_path))
  config.num_steps = 8
  with pytest.raises(
    ValueError,
    match="num_steps=4 with outer_lr_schedule="
    "'linear_decay'.*num_steps=8 would make the rate jump",
  ):
    runs.train_and_evaluate(config, str(tmp_path))
  config.num_steps = 4  # the same num_steps resumes (nothing left to train)
  runs.train_and_evaluate(config, str(tmp_path))


def test_other_config_in_workdir_is_refused(tmp_path):
  config = maml_sinusoid.get_config("smoke")
  runs.train_and_evaluate(config, str(tmp_path))
  config.inner_lr = 0.5
  with pytest.raises(ValueError, match="learner_kwargs.inner_lr: 0.01 -> 0.5"):
    runs.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize(
  "field,value,match",
  [
    ("learner", "mamll", r"config.learner must be one of .*'maml'"),
    ("dataset", "imagenet", "config.dataset must be one of"),
    ("ways", 1, "config.ways must be an integer >= 2, got 1"),
    ("shots", 0, "config.shots must be an integer >= 1, got 0"),
    ("inner_lr", -1.0, "inner_lr must be a finite number > 0, got -1.0"),
    ("inner_lr", float("inf"), "inner_lr must be a finite number > 0, got inf"),
    ("meta_batch_size", 0, "config.meta_batch_size must be an integer >= 1"),
    ("data_dir", "/nonexistent/omniglot", "does not exist"),
  ],
)
def test_bad_config_fails_before_writing(tmp_path, field, value, match):
  config = maml_omniglot.get_config("smoke")
  config[field] = value
  workdir = tmp_path / "w"
  with pytest.raises(ValueError, match=match):
    runs.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_too_many_ways_fails_before_writing(tmp_path, omniglot_data_dir):
  config = maml_omniglot.get_config("smoke")
  config.data_dir = omniglot_data_dir
  config.ways = 5000
  with pytest.raises(ValueError, match="ways=5000"):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_unknown_variant_lists_valid_ones():
  with pytest.raises(ValueError, match="valid.*5w5s"):
    maml_omniglot.get_config("5w7s")


def test_a_run_of_zero_steps_loads_its_initialization(tmp_path):
  """num_steps=0 evaluates the initialization; the run is saved as step 0."""
  config = maml_sinusoid.get_config("smoke")
  config.num_steps = 0
  results = runs.train_and_evaluate(config, str(tmp_path))
  run = runs.load_run(str(tmp_path))
  learner = from_config.build_learner(config)
  example = jax.tree.map(lambda a: a[0], from_config.example_episode(config))
  init = learner.init(jax.random.split(jax.random.key(config.seed))[0], example)
  chex.assert_trees_all_equal(run.meta_params, init)
  assert results["episodes"] == config.eval_episodes
