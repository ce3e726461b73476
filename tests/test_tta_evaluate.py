"""experiments.tta_evaluate: one copy is experiments.evaluate; an ensemble
sums its runs' log-probabilities on one set of episodes."""

import copy
import types

import jax
import numpy as np
import pytest

from experiments import tta_evaluate
from experiments.configs import minimal_omniglot
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs
from metajax.data.episodes import step_rng
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


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, omniglot_data_dir):
  config = minimal_omniglot.get_config("smoke")
  config.seed = 1  # another initialization and other training episodes
  return helpers.trained_omniglot_run(
    tmp_path_factory, omniglot_data_dir, config, "tta_seed1"
  )


def test_a_run_alone_on_another_runs_episodes(
  minimal_run, second_run, monkeypatch, omniglot_data_dir
):
  """episodes_from: the second run's learner on the first run's test
  episodes, as metajax.evaluate scores it there."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  first, second = runs.load_run(minimal_run), runs.load_run(second_run)
  plain = eval_lib.evaluate(
    from_config.build_learner(second.config, test=True),
    second.meta_params,
    from_config.build_sources(first.config)["test"],
    episodes=EPISODES,
    seed=from_config.test_seed(first.config),
  )
  alone = tta_evaluate.tta_accuracies(
    second_run, EPISODES, [1], episodes_from=minimal_run
  )
  np.testing.assert_array_equal(alone[1].values, plain.values)


def test_an_ensemble_sums_its_runs_log_probabilities(
  minimal_run, second_run, monkeypatch, omniglot_data_dir
):
  """Recomputed here from each run's learner: a query's class is the argmax
  of the two runs' log-probabilities summed, on the first run's episodes."""
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  loaded = [runs.load_run(minimal_run), runs.load_run(second_run)]
  config = loaded[0].config
  seed = from_config.test_seed(config)
  batch = from_config.build_sources(config)["test"].sample_batch(
    step_rng(seed, 0), EPISODES
  )
  keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0), EPISODES)
  expected = []
  for j in range(EPISODES):
    total = 0.0
    for run in loaded:
      learner = from_config.build_learner(run.config, test=True)
      state = learner.adapt(
        run.meta_params, (batch.support_x[j], batch.support_y[j]), keys[j]
      )
      logits = learner.predict(run.meta_params, state, batch.query_x[j])
      total = total + np.asarray(jax.nn.log_softmax(logits))
    expected.append(np.mean(total.argmax(-1) == batch.query_y[j]))
  ensemble = tta_evaluate.tta_accuracies(
    [minimal_run, second_run], EPISODES, [1]
  )
  np.testing.assert_allclose(ensemble[1].values, expected)


def test_an_ensemble_refuses_runs_with_other_episodes(minimal_run):
  run = runs.load_run(minimal_run)
  other = copy.deepcopy(run.config)
  other.test_ways = run.config.test_ways + 1
  with pytest.raises(ValueError, match=r"differs from A in \['test_ways'\]"):
    tta_evaluate._check_members(
      [run, types.SimpleNamespace(config=other)], ["A", "B"]
    )
  with pytest.raises(ValueError, match="at least one workdir"):
    tta_evaluate.tta_accuracies([], EPISODES, [1])
