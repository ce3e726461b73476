"""experiments/gpu_check.sh: valid bash, and a clear refusal without a GPU."""

import pathlib
import subprocess

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "gpu_check.sh"


def test_gpu_check_is_valid_bash():
  subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=30)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="a GPU is here")
def test_gpu_check_without_a_gpu_says_what_to_install():
  proc = subprocess.run(
    ["bash", str(SCRIPT)],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert proc.returncode == 1
  assert "JAX sees no GPU (backend: cpu)" in proc.stderr
  assert "jax[cuda12]" in proc.stderr
  assert "tasks/s" not in proc.stdout  # the benchmark did not start
