"""Helpers shared by several test files: bitwise comparison of trees,
the checkpoints of a workdir, a small sinusoid MAML, hypothesis settings,
a trained Omniglot run."""

import pathlib

import jax
import numpy as np
from hypothesis import settings
import pytest

from metajax import models
from metajax import runs
from metajax.learners import maml

PROPERTY = settings(max_examples=25, deadline=None)


def assert_bitwise_equal(a, b):
  """Same tree structure, and every leaf has the same dtype, shape and bytes."""
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    x, y = np.asarray(x), np.asarray(y)
    assert (x.dtype, x.shape) == (y.dtype, y.shape)
    assert x.tobytes() == y.tobytes()


def differs(a, b):
  return any(
    np.asarray(x).tobytes() != np.asarray(y).tobytes()
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def checkpoint_steps(workdir):
  """Finished orbax checkpoints: step folders (temporary ones are ignored)."""
  folder = pathlib.Path(workdir) / "checkpoints"
  if not folder.is_dir():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def sinusoid_learner(hidden):
  return maml(
    models.MLP(1, hidden=hidden),
    inner_lr=0.01,
    inner_steps=1,
    task="regression",
  )


def trained_omniglot_run(tmp_path_factory, data_dir, config, name):
  """The workdir of `config` trained (and tested) in a fresh folder, with
  METAJAX_DATA_DIR=data_dir for the run only."""
  workdir = str(tmp_path_factory.mktemp(name) / "run")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("METAJAX_DATA_DIR", data_dir)
    runs.train_and_evaluate(config, workdir)
  return workdir
