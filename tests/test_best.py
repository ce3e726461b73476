"""Keeping the state of the best validation (`keep_best`,
`config.select_on_validation`): the right step, the right parameters, across
a resume, and the runs layer evaluates them."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from metajax import best as best_lib
from metajax import checkpoint as ckpt_lib
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import models
from metajax import runs
from metajax import train as train_lib
from metajax.data.sinusoid import SinusoidSampler
from metajax.learners.maml import maml


def _learner():
  return maml(
    models.MLP(1, hidden=(8,)), inner_lr=0.01, inner_steps=1, task="regression"
  )


def _up_then_down():
  """Descends for 3 steps, then ascends: validation MSE falls, then rises,
  so the best state is not the last."""
  return optax.sgd(lambda step: jnp.where(step < 3, 0.05, -0.02))


def _val_mse(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["val/mse"] for r in rows if "val/mse" in r}


def _train(workdir, num_steps, **kwargs):
  source = SinusoidSampler(shots=3, queries=3)
  return train_lib.meta_train(
    _learner(),
    source,
    outer_opt=_up_then_down(),
    num_steps=num_steps,
    meta_batch_size=4,
    workdir=str(workdir),
    val_source=source,
    val_every=1,
    val_episodes=6,
    checkpoint_every=2,
    keep_best=True,
    **kwargs,
  )


def _restore_best(workdir, like):
  best = best_lib.read_best(str(workdir))
  checkpointer = ckpt_lib.Checkpointer(
    str(workdir), folder=best_lib.BEST_FOLDER
  )
  try:
    return checkpointer.restore(like, best["step"])[1]
  finally:
    checkpointer.close()


def test_keep_best_keeps_the_best_validation_and_its_parameters(tmp_path):
  final = _train(tmp_path, 8)
  val = _val_mse(tmp_path)
  best = best_lib.read_best(str(tmp_path))
  assert sorted(val) == list(range(1, 9))
  assert best["step"] == min(val, key=val.get) and best["step"] < 8
  assert best["mean"] == pytest.approx(val[best["step"]])
  assert best["metric"] == "mse"
  # The kept parameters are that step's: validating them again gives the
  # value logged at that step (the same episodes: seed + 1).
  restored = _restore_best(tmp_path, final)
  assert int(restored.step) == best["step"]
  again = eval_lib.evaluate(
    _learner(),
    restored.meta_params,
    SinusoidSampler(shots=3, queries=3),
    episodes=6,
    seed=1,
  )
  assert again.mean == pytest.approx(best["mean"], rel=1e-5)
  assert not np.allclose(
    jax.tree.leaves(restored.meta_params)[0],
    jax.tree.leaves(final.meta_params)[0],
  )


def test_keep_best_across_a_resume_equals_one_run(tmp_path):
  _train(tmp_path / "whole", 8)
  _train(tmp_path / "parts", 5)
  _train(tmp_path / "parts", 8)
  whole = best_lib.read_best(str(tmp_path / "whole"))
  parts = best_lib.read_best(str(tmp_path / "parts"))
  assert (parts["step"], parts["mean"]) == (whole["step"], whole["mean"])


def test_a_best_checkpoint_that_best_json_does_not_name_is_dropped(tmp_path):
  """A crash between the checkpoint and best.json leaves an unnamed
  checkpoint; the next start drops it and keeps the named one."""
  state = _train(tmp_path, 8)
  best = best_lib.read_best(str(tmp_path))
  checkpointer = ckpt_lib.Checkpointer(
    str(tmp_path), folder=best_lib.BEST_FOLDER
  )
  checkpointer.save(8, state)  # as if step 8 had been better, then a crash
  checkpointer.close()
  _train(tmp_path, 8)  # nothing left to train: it only opens and closes
  checkpointer = ckpt_lib.Checkpointer(
    str(tmp_path), folder=best_lib.BEST_FOLDER
  )
  try:
    assert checkpointer.all_steps() == [best["step"]]
  finally:
    checkpointer.close()


@pytest.mark.parametrize(
  "kwargs, match",
  [
    (dict(workdir=None), "give workdir"),
    (dict(val_source=None), "give val_source"),
    (dict(val_every=0), "give val_every > 0"),
  ],
)
def test_keep_best_needs_validation_and_a_workdir(tmp_path, kwargs, match):
  source = SinusoidSampler(shots=3, queries=3)
  args = dict(
    outer_opt=optax.sgd(0.01),
    num_steps=2,
    meta_batch_size=2,
    workdir=str(tmp_path),
    val_source=source,
    val_every=1,
    keep_best=True,
  )
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train_lib.meta_train(_learner(), source, **args)
  assert not os.path.exists(tmp_path / "best")


def test_select_on_validation_evaluates_the_best_state(tmp_path):
  from experiments.configs import maml_sinusoid  # pylint: disable=g-import-not-at-top

  config = maml_sinusoid.get_config("smoke")
  config.update(
    dict(
      num_steps=6,
      val_every=2,
      val_episodes=5,
      eval_episodes=10,
      checkpoint_every=3,
      select_on_validation=True,
    )
  )
  results = runs.train_and_evaluate(config, str(tmp_path))
  best = best_lib.read_best(str(tmp_path))
  val = _val_mse(str(tmp_path))
  assert best["step"] == min(val, key=val.get)
  assert results["selected_step"] == best["step"]
  assert results["selected_val_mse"] == best["mean"]
  # load_run gives what the results were computed on (the best state), and
  # the last state on request.
  source = from_config.build_sources(config)["test"]
  chosen = runs.load_run(str(tmp_path))
  result = eval_lib.evaluate(
    chosen.learner,
    chosen.meta_params,
    source,
    episodes=10,
    seed=from_config.test_seed(config),
  )
  assert result.mean == pytest.approx(results["mean"], rel=1e-6)
  last = runs.load_run(str(tmp_path), best=False)
  same = [
    np.array_equal(a, b)
    for a, b in zip(
      jax.tree.leaves(chosen.meta_params), jax.tree.leaves(last.meta_params)
    )
  ]
  assert all(same) == (best["step"] == 6)


def test_select_on_validation_config_errors(tmp_path):
  from experiments.configs import maml_sinusoid  # pylint: disable=g-import-not-at-top

  config = maml_sinusoid.get_config("smoke")
  config.update(dict(select_on_validation=True, val_every=0))
  with pytest.raises(ValueError, match="needs validation"):
    from_config.validate(config)
  fields = maml_sinusoid.get_config("smoke").to_dict()
  fields["select_on_validation"] = "yes"  # as a config.json could hold it
  with pytest.raises(ValueError, match="select_on_validation"):
    from_config.validate(ml_collections.ConfigDict(fields))
  config.update(dict(val_every=2))
  with pytest.raises(ValueError, match="give one"):
    runs.train_and_evaluate(config, None)
  with pytest.raises(ValueError, match="kept no best state"):
    runs.load_run(str(_plain_run(tmp_path)), best=True)


def _plain_run(tmp_path):
  from experiments.configs import maml_sinusoid  # pylint: disable=g-import-not-at-top

  config = maml_sinusoid.get_config("smoke")
  config.update(
    dict(num_steps=2, val_every=0, eval_episodes=2, checkpoint_every=2)
  )
  runs.train_and_evaluate(config, str(tmp_path / "plain"))
  return tmp_path / "plain"


def test_runs_written_before_later_fields_resume(tmp_path):
  """A config.json without fields or options added since
  (select_on_validation, an option of the model left at its default: the
  MLP's hidden) resumes with their defaults; another value is refused, as a
  changed old field is."""
  from experiments.configs import maml_sinusoid  # pylint: disable=g-import-not-at-top

  workdir = _plain_run(tmp_path)
  path = workdir / "config.json"
  saved = json.loads(path.read_text())
  saved.pop("select_on_validation")
  saved["model_kwargs"].pop("hidden")
  path.write_text(json.dumps(saved))
  config = maml_sinusoid.get_config("smoke")
  config.update(
    dict(num_steps=3, val_every=0, eval_episodes=2, checkpoint_every=2)
  )
  assert runs.train_and_evaluate(config, str(workdir))["episodes"] == 2
  for change in (
    dict(select_on_validation=True, val_every=2),
    dict(inner_lr=0.02),
  ):
    changed = maml_sinusoid.get_config("smoke")
    changed.update(
      {
        **dict(num_steps=3, val_every=0, eval_episodes=2, checkpoint_every=2),
        **change,
      }
    )
    field = next(k for k in change if k != "val_every")
    with pytest.raises(ValueError, match=f"different config.*{field}"):
      runs.train_and_evaluate(changed, str(workdir))


def test_the_last_step_is_validated_when_val_every_does_not_divide_it(
  tmp_path,
):
  # 5 steps, validation every 2: steps 2 and 4, and the last state (step 5)
  # too, so that selection on validation can choose it.
  source = SinusoidSampler(shots=3, queries=3)
  train_lib.meta_train(
    _learner(),
    source,
    outer_opt=_up_then_down(),
    num_steps=5,
    meta_batch_size=4,
    workdir=str(tmp_path),
    val_source=source,
    val_every=2,
    val_episodes=6,
  )
  assert sorted(_val_mse(str(tmp_path))) == [2, 4, 5]
