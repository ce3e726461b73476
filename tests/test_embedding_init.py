"""config.embedding_init: a run's embedding initialized from another run's."""

import os

import jax
import numpy as np
import pytest

from experiments.configs import maml_omniglot, protonet_omniglot, snail_omniglot
from metajax import runs
from metajax import train as train_lib
from metajax.data.episodes import step_rng


@pytest.fixture(scope="module", name="protonet_run")
def fixture_protonet_run(tmp_path_factory, omniglot_data_dir):
  """A finished ProtoNet smoke run without batch norm (SNAIL's Conv4)."""
  config = protonet_omniglot.get_config("smoke")
  config.update(dict(data_dir=omniglot_data_dir, norm=False, eval_episodes=2,
                     val_every=0))
  workdir = str(tmp_path_factory.mktemp("protonet"))
  runs.train_and_evaluate(config, workdir)
  return workdir


def _snail(omniglot_data_dir, source, **overrides):
  config = snail_omniglot.get_config("smoke")
  config.update(dict(data_dir=omniglot_data_dir, embedding_init=source,
                     num_steps=1, outer_lr=1e-7, eval_episodes=2, **overrides))
  return config


def test_snail_starts_from_a_protonet_embedding(tmp_path, omniglot_data_dir,
                                                protonet_run):
  config = _snail(omniglot_data_dir, protonet_run)
  runs.train_and_evaluate(config, str(tmp_path))
  given = runs.load_run(protonet_run).meta_params["embed"]
  got = runs.load_run(str(tmp_path)).meta_params
  # One Adam step of 1e-7 from the ProtoNet's weights, not a fresh init.
  for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(got["embed"])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  # The rest is initialized as without embedding_init (meta_train's key and
  # first example), and the fresh embedding differs from the given one.
  learner = runs.build_learner(config)
  source = runs.build_sources(config)["train"]
  fresh = train_lib.init_train_state(
      learner, runs.build_outer_opt(config), train_lib.seed_keys(config.seed)[0],
      source.sample_batch(step_rng(config.seed, 0), 1)).meta_params
  for a, b in zip(jax.tree.leaves(fresh["snail"]), jax.tree.leaves(got["snail"])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert not np.allclose(jax.tree.leaves(fresh["embed"])[0],
                         jax.tree.leaves(given)[0], atol=1e-3)


def test_embedding_init_errors(tmp_path, omniglot_data_dir, protonet_run):
  # Another network (more filters): refused before anything is written.
  workdir = tmp_path / "refused"
  with pytest.raises(ValueError, match="not this run's network"):
    runs.train_and_evaluate(_snail(omniglot_data_dir, protonet_run, filters=6),
                            str(workdir))
  assert not os.path.exists(workdir)
  with pytest.raises(ValueError, match="holds no run"):
    runs.validate(_snail(omniglot_data_dir, str(tmp_path / "nothing")))
  maml = maml_omniglot.get_config("smoke")
  maml.update(dict(data_dir=omniglot_data_dir))
  maml.embedding_init = protonet_run
  with pytest.raises(ValueError, match="'maml' has none"):
    runs.validate(maml)
