"""The trainer: one trace, exact resume, non-finite faults, the step
callback; the interval."""

import math

import chex
import jax
import numpy as np
import optax
import pytest

from experiments import progress
from metajax import _train_setup as train_setup
from metajax import evaluate as eval_lib
from metajax import metrics_io
from metajax import models
from metajax import step as step_lib
from metajax import train as train_lib
from metajax.data.episodes import step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.learners.maml import maml


def small_learner():
  return maml(
    models.MLP(1, hidden=(8,)), inner_lr=0.01, inner_steps=1, task="regression"
  )


def test_meta_step_traces_once():
  learner = small_learner()
  traces = []

  def counting_adapt(*args):
    traces.append(1)  # runs only while tracing
    return learner.adapt(*args)

  counted = learner._replace(adapt=counting_adapt)
  source = SinusoidSampler(shots=3, queries=3)
  opt = optax.adam(1e-3)
  state = step_lib.init_train_state(
    counted, opt, jax.random.key(0), source.sample_batch(step_rng(0, 0), 1)
  )
  step = step_lib.make_meta_step(counted, opt)
  for i in range(3):
    state, metrics = step(
      state, source.sample_batch(step_rng(0, i), 4), jax.random.key(i)
    )
  assert len(traces) == 1
  assert int(state.step) == 3 and np.isfinite(metrics["loss"])


def test_training_lowers_the_loss():
  learner = small_learner()
  source = SinusoidSampler(shots=5, queries=5)
  before = eval_lib.evaluate(
    learner,
    step_lib.init_train_state(
      learner,
      optax.adam(1e-2),
      step_lib.seed_keys(0)[0],
      source.sample_batch(step_rng(0, 0), 1),
    ).meta_params,
    source,
    episodes=100,
  )
  state = train_lib.meta_train(
    learner,
    source,
    outer_opt=optax.adam(1e-2),
    num_steps=300,
    meta_batch_size=8,
  )
  after = eval_lib.evaluate(learner, state.meta_params, source, episodes=100)
  # Same seed, same episodes: compare paired per-episode MSEs.
  gain = before.values - after.values
  assert gain.mean() > 2 * eval_lib.confidence_interval(gain)


class CrashingSource:
  """Raises on its `crash_at`-th call (simulates a crash mid-run)."""

  def __init__(self, source, crash_at):
    self.source, self.crash_at, self.calls = source, crash_at, 0

  def sample_batch(self, rng, size):
    self.calls += 1
    if self.calls == self.crash_at:
      raise KeyboardInterrupt("simulated crash")
    return self.source.sample_batch(rng, size)


def test_resume_equals_uninterrupted(tmp_path):
  learner = small_learner()
  source = SinusoidSampler(shots=3, queries=3)
  kwargs = dict(
    outer_opt=optax.adam(1e-2),
    num_steps=8,
    meta_batch_size=4,
    seed=5,
    checkpoint_every=2,
    log_every=1,
  )
  full = train_lib.meta_train(
    learner, source, workdir=str(tmp_path / "a"), **kwargs
  )
  # The first call to sample_batch is the init example; crash at step 5.
  crashing = CrashingSource(source, crash_at=1 + 6)
  with pytest.raises(KeyboardInterrupt):
    train_lib.meta_train(
      learner, crashing, workdir=str(tmp_path / "b"), **kwargs
    )
  resumed = train_lib.meta_train(
    learner, source, workdir=str(tmp_path / "b"), **kwargs
  )
  chex.assert_trees_all_equal(full.meta_params, resumed.meta_params)
  chex.assert_trees_all_equal(full.opt_state, resumed.opt_state)
  rows_a = metrics_io.read_metrics(str(tmp_path / "a"))
  rows_b = metrics_io.read_metrics(str(tmp_path / "b"))
  assert (
    [r["step"] for r in rows_b]
    == [r["step"] for r in rows_a]
    == list(range(1, 9))
  )
  assert rows_a == rows_b


def test_nonfinite_loss_stops_with_the_step(tmp_path):
  learner = small_learner()
  source = SinusoidSampler(shots=3, queries=3)
  with pytest.raises(train_lib.NonFiniteError, match="step 1"):
    train_lib.meta_train(
      learner,
      source,
      outer_opt=optax.sgd(1e30),
      num_steps=5,
      meta_batch_size=2,
      workdir=str(tmp_path),
      checkpoint_every=1,
    )
  rows = metrics_io.read_metrics(str(tmp_path))
  assert rows[-1]["nonfinite"] == 1.0


def test_callback_gets_each_step_and_its_validation(tmp_path):
  """One call per step, in order, with that step's finite metrics (those of
  metrics.jsonl); validation values on validation steps (every 2nd and the
  last) only; a resumed run
  calls it from the step after its checkpoint."""
  learner = small_learner()
  source = SinusoidSampler(shots=3, queries=3)
  calls = []
  kwargs = dict(
    outer_opt=optax.adam(1e-2),
    meta_batch_size=4,
    log_every=1,
    checkpoint_every=3,
    val_source=source,
    val_every=2,
    val_episodes=4,
    workdir=str(tmp_path),
    callback=lambda step, metrics: calls.append((step, metrics)),
  )
  train_lib.meta_train(learner, source, num_steps=5, **kwargs)
  assert [step for step, _ in calls] == [1, 2, 3, 4, 5]
  rows = metrics_io.read_metrics(str(tmp_path))
  for step, metrics in calls:
    assert all(
      isinstance(v, float) and math.isfinite(v) for v in metrics.values()
    ), metrics
    logged = {
      k: v
      for row in rows
      if row["step"] == step
      for k, v in row.items()
      if k != "step"
    }
    assert {k: metrics[k] for k in ("loss", "mse", "grad_norm")} == {
      k: logged[f"train/{k}"] for k in ("loss", "mse", "grad_norm")
    }
    if step % 2 == 0 or step == 5:  # and the last step
      assert metrics["val/mse"] == logged["val/mse"]
      assert metrics["val/mse_ci95"] == logged["val/mse_ci95"]
    else:
      assert not [k for k in metrics if k.startswith("val/")], metrics
  calls.clear()
  train_lib.meta_train(learner, source, num_steps=7, **kwargs)
  assert [step for step, _ in calls] == [6, 7]


class NaNAtCall:
  """Gives NaN query targets on its `nan_at`-th call (1: the init example)."""

  def __init__(self, source, nan_at):
    self.source, self.nan_at, self.calls = source, nan_at, 0

  def sample_batch(self, rng, size):
    self.calls += 1
    batch = self.source.sample_batch(rng, size)
    if self.calls == self.nan_at:
      return batch._replace(query_y=np.full_like(batch.query_y, np.nan))
    return batch


def test_callback_marks_a_dropped_step():
  calls = []
  train_lib.meta_train(
    small_learner(),
    NaNAtCall(SinusoidSampler(shots=3, queries=3), 1 + 2),
    outer_opt=optax.adam(1e-2),
    num_steps=3,
    meta_batch_size=4,
    on_nonfinite="skip",
    callback=lambda step, metrics: calls.append((step, metrics)),
  )
  assert [step for step, _ in calls] == [1, 2, 3]
  assert [metrics.get("nonfinite") for _, metrics in calls] == [None, 1.0, None]
  assert math.isnan(calls[1][1]["loss"])
  assert all(math.isfinite(calls[i][1]["loss"]) for i in (0, 2))


def test_progress_bar_shows_steps_and_validation(capsys):
  bar = progress.ProgressBar(total=5)
  bar(3, {"loss": 0.5, "mse": 0.5, "grad_norm": 1.0})  # resumed at step 2
  bar(
    4,
    {
      "loss": 0.25,
      "mse": 0.25,
      "grad_norm": 1.0,
      "val/mse": 0.125,
      "val/mse_ci95": 0.0625,
    },
  )
  bar.close()
  shown = capsys.readouterr()
  assert "step 4: val mse 0.1250 +- 0.0625" in shown.out  # as tqdm.write
  assert "4/5" in shown.err and "0/5" not in shown.err, shown.err


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(num_steps=-1), "num_steps"),
    (dict(meta_batch_size=0), "meta_batch_size"),
    (dict(on_nonfinite="ignore"), "on_nonfinite"),
  ],
)
def test_bad_arguments_write_nothing(tmp_path, kwargs, match):
  args = dict(
    outer_opt=optax.sgd(0.1),
    num_steps=2,
    meta_batch_size=2,
    workdir=str(tmp_path / "w"),
  )
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train_lib.meta_train(
      small_learner(), SinusoidSampler(shots=2, queries=2), **args
    )
  assert not (tmp_path / "w").exists()


def test_confidence_interval_formula():
  values = np.array([0.2, 0.4, 0.9, 1.0])
  expected = 1.96 * np.sqrt(np.mean((values - values.mean()) ** 2)) / 2.0
  assert eval_lib.confidence_interval(values) == pytest.approx(expected)
  with pytest.raises(ValueError):
    eval_lib.confidence_interval([])


def test_evaluate_counts_and_determinism():
  learner = small_learner()
  source = SinusoidSampler(shots=3, queries=3)
  params = step_lib.init_train_state(
    learner,
    optax.sgd(0.1),
    jax.random.key(0),
    source.sample_batch(step_rng(0, 0), 1),
  ).meta_params
  a = eval_lib.evaluate(learner, params, source, episodes=23, batch_size=10)
  b = eval_lib.evaluate(learner, params, source, episodes=23, batch_size=10)
  assert a.episodes == 23 and a.values.shape == (23,)
  np.testing.assert_array_equal(a.values, b.values)
  assert a.mean == pytest.approx(a.values.mean())
  assert a.ci95 == pytest.approx(eval_lib.confidence_interval(a.values))


def test_chunked_evaluation_equals_vmapped():
  """Episodes one at a time (the CPU default) or a few at a time under
  lax.map give what vmapping the whole batch gives, each episode with its
  own key: a learner whose adaptation depends on the key would show a key
  given to the wrong episode."""
  base = small_learner()

  def noisy_adapt(meta_params, support, key):
    adapted = base.adapt(meta_params, support, key)
    return jax.tree.map(
      lambda a: a + 0.05 * jax.random.normal(key, a.shape, a.dtype), adapted
    )

  learner = base._replace(adapt=noisy_adapt)
  source = SinusoidSampler(shots=3, queries=4)
  params = step_lib.init_train_state(
    learner,
    optax.sgd(0.1),
    jax.random.key(0),
    source.sample_batch(step_rng(0, 0), 1),
  ).meta_params
  results = {
    chunk: eval_lib.evaluate(
      learner,
      params,
      source,
      episodes=14,
      batch_size=7,
      seed=3,
      eval_step=step_lib.make_eval_step(learner, tasks_per_chunk=chunk),
    )
    for chunk in (None, 1, 3)
  }
  for chunk in (1, 3):
    np.testing.assert_allclose(
      results[chunk].values, results[None].values, rtol=1e-5
    )
  # The key-dependent noise matters to every episode's value.
  plain = eval_lib.evaluate(
    base, params, source, episodes=14, batch_size=7, seed=3
  )
  assert not np.any(np.isclose(plain.values, results[None].values, rtol=1e-3))
  assert step_lib.auto_tasks_per_chunk("cpu") == 1
  assert step_lib.auto_tasks_per_chunk("gpu") is None
  for bad in (0, 2.5):
    with pytest.raises(ValueError, match="tasks_per_chunk"):
      step_lib.make_eval_step(learner, tasks_per_chunk=bad)


class _ShiftedLabels:
  """A task source of one's own whose labels run 1..N instead of 0..N-1."""

  def __init__(self, sampler, shift):
    self.sampler, self.shift = sampler, shift

  def sample_batch(self, rng, size):
    batch = self.sampler.sample_batch(rng, size)
    return batch._replace(
      support_y=batch.support_y + self.shift, query_y=batch.query_y + self.shift
    )


def test_labels_outside_the_learner_outputs_are_refused(tmp_path):
  from metajax.data.episodes import EpisodeSampler  # pylint: disable=g-import-not-at-top
  from metajax.data.sources import ClassImages  # pylint: disable=g-import-not-at-top
  from metajax.learners.protonet import protonet  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  classes = ClassImages(
    [rng.integers(0, 256, (4, 3, 3, 1), np.uint8) for _ in range(5)],
    [f"c{i}" for i in range(5)],
  )
  sampler = EpisodeSampler(classes, ways=3, shots=1, queries=1)
  learner = protonet(models.MLP(None, hidden=(4,)), ways=3)
  args = dict(
    outer_opt=optax.sgd(0.1), num_steps=2, meta_batch_size=2, check_memory=False
  )
  with pytest.raises(
    ValueError,
    match=r"support_y holds labels 1..3, but the "
    r"learner has 3 outputs: labels must lie in 0..2",
  ):
    train_lib.meta_train(
      learner, _ShiftedLabels(sampler, 1), workdir=str(tmp_path / "w"), **args
    )
  assert not (tmp_path / "w" / "metrics.jsonl").exists()
  # A query label beyond the outputs alone is found too.
  batch = sampler.sample_batch(rng, 1)
  params = learner.init(jax.random.key(0), jax.tree.map(lambda a: a[0], batch))
  with pytest.raises(ValueError, match=r"query_y holds labels 0..3"):
    train_setup.check_labels(
      learner, params, batch._replace(query_y=np.array([[0, 1, 3]]))
    )
  # The plain source trains.
  state = train_lib.meta_train(learner, sampler, **args)
  assert int(state.step) == 2
