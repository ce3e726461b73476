"""The experiment binaries' persistent compilation cache."""

import os
import pathlib
import subprocess
import sys

import pytest

from metajax import compilation_cache

REPO = pathlib.Path(__file__).resolve().parents[1]


def _entries(folder):
  return sorted(p.name for p in folder.iterdir() if p.name.endswith("-cache"))


def test_a_second_run_loads_every_program_from_the_cache(tmp_path):
  cache = tmp_path / "cache"
  outputs = []
  for i in range(2):
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=experiments/configs/maml_sinusoid.py:smoke",
        "--noprogress",
        f"--workdir={tmp_path / f'run{i}'}",
        f"--compilation_cache_dir={cache}",
        "--compilation_cache_min_secs=0",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs.append([l for l in proc.stdout.splitlines() if "+-" in l])
    if i == 0:
      first = _entries(cache)
      assert len(first) >= 3  # init, meta-step, evaluation at least
  assert _entries(cache) == first  # every program was found: none added
  assert outputs[0] == outputs[1]  # and the run is the same


def test_default_folder_and_bad_arguments(monkeypatch, tmp_path):
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "x"))
  assert compilation_cache.default_dir() == str(tmp_path / "x")
  monkeypatch.delenv(compilation_cache.ENV)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.default_dir() == os.path.join(
    str(tmp_path), "metajax", "jax"
  )
  with pytest.raises(ValueError, match="min_compile_secs"):
    compilation_cache.enable(str(tmp_path), min_compile_secs=-1)
  with pytest.raises(ValueError, match="max_size_bytes"):
    compilation_cache.enable(str(tmp_path), max_size_bytes=0)
