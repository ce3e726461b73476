"""Smoke test of experiments/benchmark.py on a tiny setting."""

import json
import math
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

POSITIVE = (
  "tasks_per_s",
  "step_ms",
  "step_ms_min",
  "compile_s",
  "peak_rss_mb",
  "rss_before_compile_mb",
  "gflop_per_step",
  "step_gflops",
  "matmul_gflops",
  "matmul_share",
)


# One timed step of two tasks of a tiny net, no host sampling measured.
TINY = (
  "--meta_batch_size=2",
  "--warmup=0",
  "--steps=1",
  "--image_size=12",
  "--filters=4",
  "--matmul_size=64",
  "--sample_repeats=0",
)


def _bench(*flags, timeout=300):
  """Runs experiments.benchmark with `flags`; (the process, its JSON lines)
  after checking it succeeded."""
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.benchmark", *flags],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(l) for l in proc.stdout.splitlines() if l[:1] == "{"]
  return proc, lines


def test_benchmark_prints_one_json_line_per_row(tmp_path):
  json_out = tmp_path / "bench.jsonl"
  proc, lines = _bench(
    "--rows=maml_patches",
    "--meta_batch_size=2",
    "--warmup=1",
    "--steps=1",
    "--image_size=12",
    "--filters=4",
    "--matmul_size=128",
    f"--json_out={json_out}",
    timeout=120,
  )
  assert len(lines) == 1
  row = lines[0]
  assert row["row"] == "maml_patches"
  assert (row["learner"], row["conv_impl"]) == ("maml", "patches")
  assert (row["meta_batch_size"], row["steps"], row["warmup"]) == (2, 1, 1)
  for field in POSITIVE:
    assert isinstance(row[field], float), field
    assert math.isfinite(row[field]) and row[field] > 0, (field, row[field])
  assert row["peak_rss_mb"] >= row["rss_before_compile_mb"]
  assert math.isclose(row["tasks_per_s"], 2 / (row["step_ms"] / 1e3))
  # The same line went to --json_out, and a table follows.
  assert [json.loads(l) for l in json_out.read_text().splitlines()] == [row]
  assert "tasks/s" in proc.stdout and "maml_patches" in proc.stdout
  assert row["compute_dtype"] == "float32"
  # The trainer's default chunking on CPU, XLA's memory estimate, the host
  # pipeline.
  assert row["tasks_per_chunk"] == 1
  assert row["step_memory_mb"] > 0
  assert row["host_sample_ms"] > 0 and row["host_put_ms"] > 0
  # The table's device column.
  table_row = [
    l for l in proc.stdout.splitlines() if l.startswith("maml_patches ")
  ]
  assert table_row[0].endswith(f"{row['backend']} {row['device']}")


def test_benchmark_rejects_unknown_rows():
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.benchmark", "--rows=nope"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
  )
  assert proc.returncode != 0
  assert "Unknown rows" in proc.stderr


def test_benchmark_rows_of_other_learners(tmp_path):
  """Another learner, the loop baseline, all tasks at once, bfloat16."""
  rows = ["baseline_pp", "protonet_loop", "protonet_vmapped"]
  _, lines = _bench(
    f"--rows={','.join(rows)}",
    *TINY,
    "--compute_dtype=bfloat16",
  )
  assert [l["row"] for l in lines] == rows
  assert [l["learner"] for l in lines] == [
    "baseline_pp",
    "protonet",
    "protonet",
  ]
  assert lines[1]["options"] == {"loop": True}
  assert lines[2]["options"] == {"vmapped": True}
  assert [l["tasks_per_chunk"] for l in lines] == [1, 1, 2]
  assert lines[1]["step_memory_mb"] is None
  for l in lines:
    assert l["tasks_per_s"] > 0 and l["gflop_per_step"] > 0, l
    assert l["compute_dtype"] == "bfloat16", l
    assert l["host_sample_ms"] is None


def test_benchmark_inner_steps_sweep():
  """--inner_steps_sweep runs each row at each count, named row@steps:
  iMAML's XLA step memory stays while MAML's grows with the inner steps."""
  proc, rows = _bench(
    "--rows=imaml,maml_patches",
    "--inner_steps_sweep=1,16",
    *TINY,
    timeout=600,
  )
  lines = {l["row"]: l for l in rows}
  assert sorted(lines) == [
    "imaml@1",
    "imaml@16",
    "maml_patches@1",
    "maml_patches@16",
  ]
  assert lines["imaml@16"]["inner_steps"] == 16
  assert lines["imaml@16"]["learner"] == "imaml"
  memory = {row: l["step_memory_mb"] for row, l in lines.items()}
  assert memory["imaml@16"] <= 1.01 * memory["imaml@1"], memory
  assert memory["maml_patches@16"] > 1.5 * memory["maml_patches@1"], memory
  assert memory["maml_patches@16"] > 1.5 * memory["imaml@16"], memory
  assert "imaml@16" in proc.stdout.split("tasks/s")[-1]  # the table


def test_benchmark_resnet12_rows():
  """The ResNet-12 rows build that backbone, with --resnet12_channels."""
  rows = ["protonet_resnet12", "maml_resnet12_xla"]
  _, lines = _bench(
    f"--rows={','.join(rows)}",
    "--resnet12_channels=4,6,4,4",
    "--meta_batch_size=2",
    "--warmup=0",
    "--steps=1",
    "--image_size=16",
    "--queries=1",
    "--matmul_size=64",
    "--sample_repeats=0",
  )
  assert [l["row"] for l in lines] == rows
  assert [(l["learner"], l["conv_impl"]) for l in lines] == [
    ("protonet", "patches"),
    ("maml", "xla"),
  ]
  for l in lines:
    assert l["model"] == "resnet12" and l["channels"] == [4, 6, 4, 4], l
    assert l["gflop_per_step"] > 0 and l["tasks_per_s"] > 0, l
