"""Shared test fixtures: where the Omniglot test zips are; a finished run.

The tests, in-process and the experiment binaries they start, use a
compilation cache of the test suite's own (in the system's temporary folder,
shared by the test workers), not the user's: the many tests that train the
same small configs compile each program once per suite run.
"""

import os
import pathlib
import tempfile

import pytest

from experiments.configs import maml_sinusoid
from metajax import compilation_cache
from metajax import runs
from tests.helpers import checkpoint_steps

REPO = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault(
  "METAJAX_COMPILATION_CACHE",
  os.path.join(tempfile.gettempdir(), f"metajax-tests-{os.getuid()}", "jax"),
)
compilation_cache.enable(os.environ["METAJAX_COMPILATION_CACHE"])


def omniglot_dir():
  """METAJAX_DATA_DIR if set, else ../shared/data/omniglot beside the repo."""
  env = os.environ.get("METAJAX_DATA_DIR")
  if env:
    return pathlib.Path(env)
  return REPO.parent / "shared" / "data" / "omniglot"


@pytest.fixture(scope="session")
def omniglot_data_dir():
  path = omniglot_dir()
  if not (path / "images_background_small1.zip").exists():
    pytest.skip(f"Omniglot test zips not found in {path}")
  return str(path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished smoke run (checkpoints at steps 10 and 20), copied per test."""
  workdir = tmp_path_factory.mktemp("finished") / "run"
  runs.train_and_evaluate(maml_sinusoid.get_config("smoke"), str(workdir))
  assert checkpoint_steps(workdir) == [10, 20]
  return workdir
