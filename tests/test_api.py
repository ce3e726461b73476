"""The public API: an explicit sorted __all__, every name there, a light import."""

import subprocess
import sys

import metajax
from metajax import learners
from tests.conftest import REPO


def test_all_is_sorted_and_every_name_resolves():
  assert list(metajax.__all__) == sorted(metajax.__all__)
  for name in metajax.__all__:
    assert getattr(metajax, name) is not None, name
  assert sorted(dir(metajax)) == dir(metajax)
  assert set(metajax.__all__) <= set(dir(metajax))
  # Every learner factory of the config lookup is public.
  assert set(learners.FACTORIES) <= set(metajax.__all__)


def test_run_loaders_are_the_runs_module_s():
  from metajax import runs  # pylint: disable=g-import-not-at-top

  assert metajax.load_run is runs.load_run
  assert metajax.predict is runs.predict and metajax.Run is runs.Run


def test_import_metajax_does_not_import_orbax_or_ml_collections():
  code = (
    "import sys, metajax\n"
    "heavy = [m for m in ('orbax', 'ml_collections', 'tensorflow', "
    "'tensorflow_datasets') if m in sys.modules]\n"
    "print(heavy)\n"
    "metajax.load_run\n"
    "print('ml_collections' in sys.modules)\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  heavy, loaded = proc.stdout.splitlines()
  assert heavy == "[]"
  assert loaded == "True"  # imported on first use of load_run
