"""experiments.baseline_diagnosis: its variants are the library's fits."""

import numpy as np
import pytest

from experiments import baseline_diagnosis
from experiments.configs import baseline_omniglot
from experiments.configs import protonet_omniglot
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs
from tests import helpers

EPISODES = 4


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, omniglot_data_dir):
  return helpers.trained_omniglot_run(
    tmp_path_factory,
    omniglot_data_dir,
    baseline_omniglot.get_config("smoke"),
    "baseline",
  )


def _library(workdir, **learner_kwargs):
  """The run's own test learner (with `learner_kwargs` set) on the test
  episodes that experiments.evaluate uses."""
  run = runs.load_run(workdir)
  config = run.config
  config.unlock()
  config.learner_kwargs.update(learner_kwargs)
  learner = from_config.build_learner(config, test=True)
  source = from_config.build_sources(config)["test"]
  return eval_lib.evaluate(
    learner,
    run.meta_params,
    source,
    episodes=EPISODES,
    seed=from_config.test_seed(config),
  ).values


def test_the_library_rows_are_the_librarys_fit(
  smoke_run, monkeypatch, omniglot_data_dir
):
  """The "zeros start" row is what the library does now and the "random
  start, own statistics" row what it did before (head_init="random"), episode
  for episode; the other variants are variations of these."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  workdir = smoke_run
  results = baseline_diagnosis.diagnose(workdir, EPISODES, reference_images=16)
  np.testing.assert_array_equal(
    results["zeros start"].values, _library(workdir)
  )
  np.testing.assert_array_equal(
    results["random start, batch norm: own"].values,
    _library(workdir, head_init="random"),
  )
  assert set(results) >= {
    f"random start, batch norm: {s}" for s in baseline_diagnosis.STATS
  }
  assert all(r.episodes == EPISODES for r in results.values())


def test_other_learners_are_refused(tmp_path, monkeypatch, omniglot_data_dir):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  config = protonet_omniglot.get_config("smoke")
  config.num_steps = 1
  runs.train_and_evaluate(config, str(tmp_path / "run"))
  with pytest.raises(ValueError, match="is a protonet run"):
    baseline_diagnosis.diagnose(str(tmp_path / "run"), 1)
