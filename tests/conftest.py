"""Shared test fixtures: where the Omniglot test zips are.

The tests, in-process and the experiment binaries they start, use a
compilation cache of the test suite's own (in the system's temporary folder,
shared by the test workers), not the user's: the many tests that train the
same small configs compile each program once per suite run.
"""

import os
import pathlib
import tempfile

import pytest

from metajax import compilation_cache

REPO = pathlib.Path(__file__).resolve().parents[1]

os.environ.setdefault(
    "METAJAX_COMPILATION_CACHE",
    os.path.join(tempfile.gettempdir(), f"metajax-tests-{os.getuid()}", "jax"))
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
