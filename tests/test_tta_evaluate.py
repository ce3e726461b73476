"""experiments.tta_evaluate: one copy is experiments.evaluate."""

import numpy as np
import pytest

from experiments import tta_evaluate
from experiments.configs import minimal_omniglot
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs
from tests import helpers

EPISODES = 3


@pytest.fixture(scope="module")
def minimal_run(tmp_path_factory, omniglot_data_dir):
  return helpers.trained_omniglot_run(
    tmp_path_factory,
    omniglot_data_dir,
    minimal_omniglot.get_config("smoke"),
    "tta",
  )


def test_one_copy_is_the_plain_evaluation(
  minimal_run, monkeypatch, omniglot_data_dir
):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  run = runs.load_run(minimal_run)
  plain = eval_lib.evaluate(
    from_config.build_learner(run.config, test=True),
    run.meta_params,
    from_config.build_sources(run.config)["test"],
    episodes=EPISODES,
    seed=from_config.test_seed(run.config),
  )
  tta = tta_evaluate.tta_accuracies(minimal_run, EPISODES, [1])
  np.testing.assert_array_equal(tta[1].values, plain.values)


def test_identical_copies_change_nothing(
  minimal_run, monkeypatch, omniglot_data_dir
):
  """At strength 0 every warp is the identity, so the average of K copies'
  log-probabilities has the one copy's argmax."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  tta = tta_evaluate.tta_accuracies(minimal_run, EPISODES, [1, 4], strength=0.0)
  np.testing.assert_array_equal(tta[4].values, tta[1].values)
  with pytest.raises(ValueError, match="copies must be integers >= 1"):
    tta_evaluate.tta_accuracies(minimal_run, EPISODES, [0])


def test_the_warp_ranges_are_the_runs_scaled():
  config = minimal_omniglot.get_config("small1")
  full = tta_evaluate.warp_ranges(config, 1.0)
  half = tta_evaluate.warp_ranges(config, 0.5)
  assert half["rotation"] == full["rotation"] / 2
  assert half["scale"][1] - 1 == pytest.approx((full["scale"][1] - 1) / 2)
  assert tta_evaluate.warp_ranges(config, 0.0)["scale"] == (1.0, 1.0)
