"""Numerical faults: non-finite losses, gradients and parameters, and
on_nonfinite='skip'.

Each test backs a row of docs/reliability.md.
"""

import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import maml_sinusoid
from metajax import checkpoint as ckpt_lib
from metajax import metrics_io
from metajax import models
from metajax import runs
from metajax import train as train_lib
from metajax.data.episodes import step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.learners import maml
from metajax.types import Episode, Learner
from tests.conftest import REPO
from tests.helpers import (
  assert_bitwise_equal,
  checkpoint_steps,
  differs,
  sinusoid_learner,
)


# ----------------------------------------------------------- numerical faults


class PoisonedSource:
  """Sinusoid tasks whose batch for step `step` (1-based) is replaced.

  The step is recognized from the generator the trainer passes
  (`step_rng(seed, step - 1)`), so it works across resumes. `crash_at`
  raises KeyboardInterrupt when that step's batch is asked for.
  """

  def __init__(self, step, poison, seed=0, crash_at=None):
    self.base = SinusoidSampler(shots=3, queries=3)
    self.step, self.poison, self.seed, self.crash_at = (
      step,
      poison,
      seed,
      crash_at,
    )

  def _is(self, rng, step):
    return (
      step is not None
      and rng.bit_generator.state
      == step_rng(self.seed, step - 1).bit_generator.state
    )

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
  return Learner(
    init=lambda key, episode: {"w": jnp.ones(())},
    adapt=lambda params, support, key: params["w"],
    predict=lambda params, w, x: w * x,
    loss=loss,
    metric=loss,
    metric_name="mse",
  )


def train_kwargs(**overrides):
  kwargs = dict(
    outer_opt=optax.adam(1e-2),
    num_steps=8,
    meta_batch_size=4,
    checkpoint_every=2,
    log_every=1,
  )
  kwargs.update(overrides)
  return kwargs


def test_nonfinite_loss_stops_at_its_step_and_keeps_the_checkpoint(tmp_path):
  learner = sinusoid_learner((8,))
  with pytest.raises(train_lib.NonFiniteError) as info:
    train_lib.meta_train(
      learner,
      PoisonedSource(5, nan_targets),
      workdir=str(tmp_path / "bad"),
      **train_kwargs(),
    )
  message = str(info.value)
  assert message.startswith(
    "Non-finite loss and grad_norm at step 5 (loss=nan, grad_norm=nan)."
  )
  assert "The last checkpoint, kept, is step 4." in message
  assert "on_nonfinite='skip'" in message
  # The kept checkpoint is the state after 4 good steps.
  assert checkpoint_steps(tmp_path / "bad") == [2, 4]
  good = train_lib.meta_train(
    learner, PoisonedSource(5, nan_targets), **train_kwargs(num_steps=4)
  )
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
  with pytest.raises(
    train_lib.NonFiniteError,
    match=r"^Non-finite grad_norm at step 3 \(grad_norm=nan\)",
  ):
    train_lib.meta_train(
      sqrt_error_learner(),
      PoisonedSource(3, zeros),
      workdir=str(tmp_path),
      **train_kwargs(),
    )
  row = metrics_io.read_metrics(str(tmp_path))[-1]
  assert row["step"] == 3 and row["nonfinite"] == 1.0
  assert row["loss"] == 0.0 and math.isnan(row["grad_norm"])


def test_nonfinite_without_workdir_says_there_is_no_checkpoint():
  with pytest.raises(
    train_lib.NonFiniteError, match="at step 1 .*no checkpoint to resume from"
  ):
    train_lib.meta_train(
      sinusoid_learner((8,)), PoisonedSource(1, nan_targets), **train_kwargs()
    )


def test_skip_drops_exactly_the_nonfinite_step(tmp_path):
  learner = sinusoid_learner((8,))
  source = PoisonedSource(3, nan_targets)
  run = lambda n, **kw: train_lib.meta_train(
    learner, source, **train_kwargs(num_steps=n, on_nonfinite="skip", **kw)
  )
  two, three, four = run(2), run(3, workdir=str(tmp_path)), run(4)
  # Step 3 changed nothing but the step counter; step 4 trained again.
  assert_bitwise_equal(three.meta_params, two.meta_params)
  assert_bitwise_equal(three.opt_state, two.opt_state)
  assert int(three.step) == 3
  assert differs(four.meta_params, three.meta_params)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(four.meta_params))
  rows = metrics_io.read_metrics(str(tmp_path))
  assert [(r["step"], r.get("nonfinite")) for r in rows] == [
    (1, None),
    (2, None),
    (3, 1.0),
  ]
  assert checkpoint_steps(tmp_path) == [2, 3]  # the last step is saved anyway


def test_skip_then_crash_and_resume_equals_uninterrupted(tmp_path):
  learner = sinusoid_learner((8,))
  kwargs = train_kwargs(on_nonfinite="skip")
  full = train_lib.meta_train(
    learner,
    PoisonedSource(3, nan_targets),
    workdir=str(tmp_path / "a"),
    **kwargs,
  )
  with pytest.raises(KeyboardInterrupt):
    train_lib.meta_train(
      learner,
      PoisonedSource(3, nan_targets, crash_at=6),
      workdir=str(tmp_path / "b"),
      **kwargs,
    )
  assert checkpoint_steps(tmp_path / "b") == [2, 4]
  resumed = train_lib.meta_train(
    learner,
    PoisonedSource(3, nan_targets),
    workdir=str(tmp_path / "b"),
    **kwargs,
  )
  assert_bitwise_equal(resumed, full)
  rows = [json.dumps(r) for r in metrics_io.read_metrics(str(tmp_path / "a"))]
  assert rows == [
    json.dumps(r) for r in metrics_io.read_metrics(str(tmp_path / "b"))
  ]


def test_overflowing_update_is_never_saved(tmp_path):
  # Finite loss and gradient, but a step so large the parameters overflow.
  with pytest.raises(
    train_lib.NonFiniteError,
    match=r"^Non-finite meta_params at step 1 \(\d+ of 4 "
    r"entries are NaN or inf\), not saved. There is no "
    "checkpoint",
  ):
    train_lib.meta_train(
      maml(
        models.MLP(1, hidden=(1,)),
        inner_lr=0.01,
        inner_steps=1,
        task="regression",
      ),
      SinusoidSampler(shots=3, queries=3),
      outer_opt=optax.sgd(3e38),
      num_steps=4,
      meta_batch_size=4,
      checkpoint_every=1,
      workdir=str(tmp_path),
    )
  assert checkpoint_steps(tmp_path) == []
  row = metrics_io.read_metrics(str(tmp_path))[-1]
  assert row["step"] == 1 and row["nonfinite"] == 1.0
  assert row["nonfinite_meta_params"] >= 1


def test_binary_reports_a_nonfinite_loss_in_one_line(tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--noprogress",
      "--config=experiments/configs/maml_sinusoid.py:smoke",
      "--config.outer_opt=sgd",
      "--config.outer_lr=1e30",
      "--config.checkpoint_every=1",
      f"--workdir={tmp_path}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1] == (
    "NonFiniteError: Non-finite loss and grad_norm at step 2 (loss=nan, "
    "grad_norm=nan). The last checkpoint, kept, is step 1. Pass "
    "on_nonfinite='skip' (config.on_nonfinite) to drop such steps instead."
  )
  assert checkpoint_steps(tmp_path) == [1]
  row = metrics_io.read_metrics(str(tmp_path))[-1]
  assert row["step"] == 2 and row["nonfinite"] == 1.0
  assert not (tmp_path / "results.json").exists()


def test_config_chooses_skip(tmp_path):
  config = maml_sinusoid.get_config("smoke")
  config.on_nonfinite = "ignore"
  with pytest.raises(
    ValueError,
    match="config.on_nonfinite must be one of 'raise', 'skip'; got 'ignore'",
  ):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
  config.on_nonfinite = "skip"
  config.num_steps = 2
  results = runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert math.isfinite(results["mean"])
