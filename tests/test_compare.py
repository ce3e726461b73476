"""experiments.compare: the cells' configs share what the table says they
share; the binary writes one jsonl line per finished cell and the table,
resumes a half-finished table, trains nothing twice, and refuses bad flags
in one line."""

import functools
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import compare_report
from experiments import comparison
from metajax import from_config
from tests.conftest import REPO
from tests.helpers import checkpoint_steps

KEYS = {
  "learner",
  "ways",
  "shots",
  "mean",
  "ci95",
  "budget",
  "device",
  "train_seconds",
  "num_test_episodes",
  "config",
  "paper",
}


def _compare(*args, data_dir=None):
  env = dict(os.environ)
  if data_dir:
    env["METAJAX_DATA_DIR"] = data_dir
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.compare",
      "--noprogress",
      "--budget=smoke",
      *args,
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
  )


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def _every_cell(budget):
  return [
    (l, c, comparison.cell_config(l, c, budget))
    for l in comparison.LEARNERS
    for c in comparison.CELLS
  ]


# ------------------------------------------------------ the cells' configs


@pytest.mark.parametrize("budget", sorted(comparison.BUDGETS))
def test_every_cell_shares_the_fields_and_the_number_of_tasks(budget):
  budget = comparison.BUDGETS[budget]
  cells = _every_cell(budget)
  for field in comparison.SHARED_FIELDS:
    values = {
      json.dumps(
        _get(c, field).to_dict() if field == "data_kwargs" else _get(c, field)
      )
      for _, _, c in cells
    }
    assert len(values) == 1, (field, values)
  assert {c.image_size for _, _, c in cells} == {budget.image_size}
  assert {c.model_kwargs.filters for _, _, c in cells} == {budget.filters}
  for learner, cell, c in cells:
    ways, shots = comparison.cell_sizes(cell)
    assert (c.test_ways, c.test_shots) == (ways, shots), (learner, cell)
    assert c.test_queries == {5: 15, 20: 5}[ways]
    assert c.select_on_validation and c.val_every == max(
      1, c.num_steps // comparison.VALIDATIONS
    )
    if learner in ("baseline", "baseline_pp"):  # one mini-batch = one task
      assert (c.num_steps, c.meta_batch_size) == (budget.tasks, 1)
    else:
      assert c.num_steps == math.ceil(budget.tasks / c.meta_batch_size)
      if budget.name != "smoke":  # exact: tasks divide by every meta-batch
        assert c.num_steps * c.meta_batch_size == budget.tasks, (learner, cell)
    # norm and pooling stay the learner's; the stride-2 net for all but the
    # sequence learners, which embed each image alone (max-pool Conv4).
    own = comparison.learner_config(learner, cell).model_kwargs
    assert (c.model_kwargs.norm, c.model_kwargs.pooling) == (
      own.norm,
      own.pooling,
    )
    assert (c.model_kwargs.pooling == "stride") == (
      learner not in ("snail", "mann")
    )


def test_each_cell_keeps_its_learners_recipe():
  budget = comparison.BUDGETS["cpu"]
  cells = {(l, c): config for l, c, config in _every_cell(budget)}
  assert cells["protonet", "20w5s"].ways == 60
  assert cells["reptile", "5w1s"].shots == 15
  assert cells["reptile", "5w1s"].meta_batch_size == 10
  assert cells["reptile", "20w1s"].test_inner_batch_size == 10
  assert cells["maml", "20w1s"].inner_steps == 5
  assert cells["maml", "20w1s"].meta_batch_size == 16
  assert cells["baseline", "5w1s"].batch_size == 128
  assert cells["meta_learner_lstm", "20w5s"].ways == 20
  assert cells["meta_learner_lstm", "20w5s"].learner_kwargs.first_order
  assert cells["mann", "20w1s"].ways == 20
  assert cells["snail", "5w5s"].learner_kwargs.tc_filters == 128


@pytest.mark.parametrize("budget", sorted(comparison.BUDGETS))
def test_shared_cells_train_the_same_run_and_others_do_not(budget):
  budget = comparison.BUDGETS[budget]
  for (learner, cell), trained in comparison.SHARED.items():
    assert (
      comparison.training_difference(
        comparison.cell_config(learner, cell, budget),
        comparison.cell_config(learner, trained, budget),
      )
      == []
    )
  # The check can fail: MAML's 20-way run is not its 5-way one.
  assert "ways" in comparison.training_difference(
    comparison.cell_config("maml", "20w1s", budget),
    comparison.cell_config("maml", "5w1s", budget),
  )


def test_every_cpu_cell_validates(omniglot_data_dir, monkeypatch):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  for learner, cell, config in _every_cell(comparison.BUDGETS["cpu"]):
    assert from_config.validate(config).eval_episodes == 600, (learner, cell)


@pytest.mark.parametrize(
  "learner", ["maml", "protonet", "matching_net", "reptile", "meta_curvature"]
)
def test_paper_figures_agree_with_the_configs(learner):
  for cell in comparison.CELLS:
    figure = comparison.paper_figure(learner, cell).split(" (")[0]
    assert figure in comparison.learner_config(learner, cell).paper_result


# ------------------------------------------------------------- the binary


def _mtimes(root):
  return {
    p: os.stat(p).st_mtime_ns
    for p in sorted(
      str(p)
      for p in root.rglob("*")
      if p.name in ("results.json", "metrics.jsonl")
    )
  }


def _lines(out):
  return [
    json.loads(l) for l in (out / "comparison.jsonl").read_text().splitlines()
  ]


def test_table_resumes_trains_nothing_twice_and_reports_each_cell(
  tmp_path, omniglot_data_dir
):
  root, out = tmp_path / "table", tmp_path / "docs"
  args = (f"--workdir={root}", f"--output={out}")
  compare = functools.partial(_compare, data_dir=omniglot_data_dir)
  # One learner first (a table stopped half way), then two: the first
  # learner's cells are not run again.
  proc = compare(*args, "--learners=protonet", "--cells=5w1s,20w1s")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert len(_lines(out)) == 2
  first = _mtimes(root)
  proc = compare(*args, "--learners=protonet,maml", "--cells=5w1s")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "compare: protonet" not in proc.stdout
  assert "compare: maml 5w1s" in proc.stdout
  assert {k: v for k, v in _mtimes(root).items() if k in first} == first
  lines = _lines(out)
  assert [(l["learner"], l["ways"], l["shots"]) for l in lines] == [
    ("maml", 5, 1),
    ("protonet", 5, 1),
    ("protonet", 20, 1),
  ]
  budget = comparison.BUDGETS["smoke"]
  for line in lines:
    assert KEYS <= set(line), KEYS - set(line)
    results = json.loads((root / line["workdir"] / "results.json").read_text())
    assert (line["mean"], line["ci95"], line["num_test_episodes"]) == (
      results["mean"],
      results["ci95"],
      results["episodes"],
    )
    assert line["budget"] == {"name": "smoke", "tasks": budget.tasks}
    assert line["device"] == "cpu" and line["train_seconds"] > 0
  assert lines[2]["trained_in"] == "5w1s"
  assert lines[2]["train_seconds"] == lines[1]["train_seconds"]
  _check_saved_configs(root, lines)
  table = (out / "comparison.md").read_text()
  rows = {
    r.split(" | ")[0]: r.split(" | ")[1:6]
    for r in table.splitlines()
    if r.startswith(("| MAML |", "| ProtoNets |"))
  }
  percent = lambda l: f"{100 * l['mean']:.2f} +- {100 * l['ci95']:.2f}"
  steps = lambda l: f"{l['num_steps']}x{l['meta_batch_size']}"
  assert rows["| MAML"] == [
    percent(lines[0]),
    "-",
    "-",
    "-",
    f"{steps(lines[0])} / - / - / -",
  ]
  assert rows["| ProtoNets"] == [
    percent(lines[1]),
    "-",
    percent(lines[2]),
    "-",
    f"{steps(lines[1])} / - / =5w1s / -",
  ]
  # Again: nothing is trained, the same table is written.
  done = _mtimes(root)
  proc = compare(*args, "--learners=protonet,maml", "--cells=5w1s")
  assert proc.returncode == 0 and "compare: " not in proc.stdout
  assert _mtimes(root) == done and (out / "comparison.md").read_text() == table
  # Killed after the last checkpoint, before results.json: the cell resumes
  # from its checkpoint (no step trained again) and tests the same state.
  cell = root / "maml" / "5w1s"
  (cell / "results.json").unlink()
  metrics = (cell / "metrics.jsonl").read_text()
  proc = compare(*args, "--learners=protonet,maml", "--cells=5w1s")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "compare: maml 5w1s" in proc.stdout
  assert (cell / "metrics.jsonl").read_text() == metrics
  assert checkpoint_steps(cell) == [1]
  assert (
    _lines(out)
    == lines[:0]
    + [dict(lines[0], train_seconds=_lines(out)[0]["train_seconds"])]
    + lines[1:]
  )


def _check_saved_configs(root, lines):
  """The shared fields, read back from every cell's saved config."""
  saved = [
    json.loads((root / l["workdir"] / "results.json").read_text())["config"]
    for l in lines
  ]
  saved += [
    json.loads((root / l["workdir"] / "config.json").read_text())
    for l in lines
    if not l["trained_in"]
  ]
  for field in comparison.SHARED_FIELDS:
    assert len({json.dumps(_get(c, field)) for c in saved}) == 1, field
  for config in saved:
    assert config["num_steps"] * config["meta_batch_size"] == 32


@pytest.mark.parametrize(
  "args,expected",
  [
    (["--learners=maml,protonett"], "--learners: unknown learner 'protonett'"),
    (["--cells=5w1s,5w2s"], "--cells: unknown cell '5w2s'"),
    (["--budget=tpu"], "--budget=tpu: unknown budget; valid: cpu, gpu, smoke"),
  ],
  ids=["learner", "cell", "budget"],
)
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, args, expected):
  proc = _compare(
    f"--workdir={tmp_path / 'w'}", f"--output={tmp_path / 'o'}", *args
  )
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.strip().splitlines()[-1].startswith("compare: " + expected)
  assert not (tmp_path / "w").exists() and not (tmp_path / "o").exists()


def test_a_table_holds_one_budget(tmp_path):
  cell = tmp_path / "w" / "maml" / "5w1s"
  cell.mkdir(parents=True)
  (cell / compare_report.COMPARE_JSON).write_text(
    json.dumps({"budget": comparison.describe(comparison.BUDGETS["cpu"])})
  )
  proc = _compare(
    f"--workdir={tmp_path / 'w'}", f"--output={tmp_path / 'o'}", "--report_only"
  )
  assert proc.returncode == 1
  assert "a table holds one budget" in proc.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "o").exists()


def test_every_learner_of_the_table_has_a_display_name():
  """The report names each row; a learner added to the table without a name
  would fail only when the table is written, after its first cell."""
  assert set(comparison.LEARNERS) <= set(compare_report.NAMES)


def _fake_cell(root, learner, cell, mean, budget):
  """A finished cell's results.json and compare.json, as the binary writes
  them (the fields the report reads)."""
  workdir = root / learner / cell
  workdir.mkdir(parents=True)
  config = {"num_steps": 4, "meta_batch_size": 8, "paper_result": "-"}
  (workdir / "results.json").write_text(
    json.dumps(
      {
        "metric": "accuracy",
        "mean": mean,
        "ci95": 0.01,
        "episodes": 10,
        "config": config,
      }
    )
  )
  (workdir / compare_report.COMPARE_JSON).write_text(
    json.dumps(
      {"budget": comparison.describe(budget), "devices": ["cpu"], "seconds": 3}
    )
  )


def test_cells_whose_workdirs_are_gone_keep_their_previous_lines(tmp_path):
  """A table outlives its workdirs through its jsonl: rewriting it from a
  workdir that lacks some cells keeps their lines (same budget only), and a
  cell finished in the workdir replaces its previous line."""
  smoke, cpu = comparison.BUDGETS["smoke"], comparison.BUDGETS["cpu"]
  old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "docs"
  _fake_cell(old, "maml", "5w1s", 0.5, smoke)
  _fake_cell(old, "protonet", "5w1s", 0.6, smoke)
  learners = ["maml", "protonet"]
  compare_report.write(str(old), learners, smoke, str(out), "c")
  # Another budget's line in the jsonl is not this table's: dropped.
  foreign = dict(_lines(out)[0], cell="20w5s", budget=comparison.describe(cpu))
  with open(out / "comparison.jsonl", "a") as f:
    f.write(json.dumps(foreign) + "\n")
  _fake_cell(new, "protonet", "5w1s", 0.7, smoke)
  compare_report.write(str(new), learners, smoke, str(out), "c")
  lines = _lines(out)
  assert [(l["learner"], l["cell"], l["mean"]) for l in lines] == [
    ("maml", "5w1s", 0.5),
    ("protonet", "5w1s", 0.7),
  ]
  assert lines[0]["kept"] and "kept" not in lines[1]
  table = (out / "comparison.md").read_text()
  assert "| MAML | 50.00 +- 1.00 | - |" in table
  assert "| ProtoNets | 70.00 +- 1.00 | - |" in table
  assert "1 of the cells above come from the previous comparison.jsonl" in table
