"""Shared test fixtures: where the Omniglot test zips are.

The experiment binaries that tests start use a compilation cache of the
test suite's own (in the system's temporary folder, shared by the test
workers), not the user's.

The suite compiles with XLA's CPU backend optimization level 0: its models
are tiny, so compiling dominates, and level 0 measured about 35% less time on
the config smoke runs. It changes no result the tests check (the generated
code is slower, not different in value); benchmarks and training runs keep
the default. A level set in XLA_FLAGS by the caller is kept.
"""

import os
import pathlib
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

_FAST_COMPILE = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      f for f in (os.environ.get("XLA_FLAGS", ""), _FAST_COMPILE) if f)

os.environ.setdefault(
    "METAJAX_COMPILATION_CACHE",
    os.path.join(tempfile.gettempdir(), f"metajax-tests-{os.getuid()}", "jax"))


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
