"""config.embedding_init: a run's embedding initialized from another run's."""

import os

import jax
import numpy as np
import pytest

from experiments.configs import maml_omniglot, protonet_omniglot, snail_omniglot
from metajax import runs


def _protonet(tmp_path, omniglot_data_dir, norm):
  config = protonet_omniglot.get_config("smoke")
  config.update(dict(data_dir=omniglot_data_dir, norm=norm, eval_episodes=2,
                     val_every=0))
  workdir = str(tmp_path / f"protonet_norm_{norm}")
  runs.train_and_evaluate(config, workdir)
  return workdir


def _snail(omniglot_data_dir, source):
  config = snail_omniglot.get_config("smoke")
  config.update(dict(data_dir=omniglot_data_dir, embedding_init=source,
                     num_steps=1, outer_lr=1e-7, eval_episodes=2))
  return config


def test_snail_starts_from_a_protonet_embedding(tmp_path, omniglot_data_dir):
  source = _protonet(tmp_path, omniglot_data_dir, norm=False)
  workdir = str(tmp_path / "snail")
  runs.train_and_evaluate(_snail(omniglot_data_dir, source), workdir)
  given = runs.load_run(source).meta_params["embed"]
  got = runs.load_run(workdir).meta_params
  # One Adam step of 1e-7 from the ProtoNet's weights, not a fresh init.
  for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(got["embed"])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  fresh = str(tmp_path / "fresh")
  runs.train_and_evaluate(_snail(omniglot_data_dir, ""), fresh)
  fresh_params = runs.load_run(fresh).meta_params
  assert not np.allclose(jax.tree.leaves(fresh_params["embed"])[0],
                         jax.tree.leaves(given)[0], atol=1e-3)
  # The rest is initialized as without embedding_init.
  for a, b in zip(jax.tree.leaves(fresh_params["snail"]),
                  jax.tree.leaves(got["snail"])):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_embedding_init_errors(tmp_path, omniglot_data_dir):
  # Another network (batch norm adds parameters): refused before writing.
  other = _protonet(tmp_path, omniglot_data_dir, norm=True)
  workdir = tmp_path / "refused"
  with pytest.raises(ValueError, match="not this run's network"):
    runs.train_and_evaluate(_snail(omniglot_data_dir, other), str(workdir))
  assert not os.path.exists(workdir)
  with pytest.raises(ValueError, match="holds no run"):
    runs.validate(_snail(omniglot_data_dir, str(tmp_path / "nothing")))
  maml = maml_omniglot.get_config("smoke")
  maml.update(dict(data_dir=omniglot_data_dir))
  maml.embedding_init = other
  with pytest.raises(ValueError, match="'maml' has none"):
    runs.validate(maml)
