#!/usr/bin/env bash
# The benchmark on a GPU in a few minutes: prints the device, the table of
# every learner's meta-step (the same setting as the README's CPU table) and
# the JSON lines, which also go to ${OUT:-/tmp}/gpu_benchmark.jsonl.
#
#   bash experiments/gpu_check.sh                 # all rows
#   bash experiments/gpu_check.sh --rows=maml_patches,maml_xla
#
# Needs a CUDA build of jax (e.g. pip install -U "jax[cuda12]"); extra
# arguments go to `python -m experiments.benchmark`.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=$(python -c "import jax; print(jax.default_backend())")
if [[ "${backend}" != "gpu" ]]; then
  echo "gpu_check: JAX sees no GPU (backend: ${backend}). Install a CUDA" \
       "build of jax, e.g. pip install -U \"jax[cuda12]\", and check" \
       "nvidia-smi." >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -c "import jax; print('jax', jax.__version__, jax.devices())"
out="${OUT:-/tmp}/gpu_benchmark.jsonl"
rm -f "${out}"
# On a GPU the XLA convolution is fast, so its row gets the full step count.
timeout 280 python -m experiments.benchmark --steps=20 --warmup=3 \
  --xla_steps=20 --xla_warmup=3 --matmul_size=8192 --json_out="${out}" "$@"
