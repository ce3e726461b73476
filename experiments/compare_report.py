"""comparison.md and comparison.jsonl of `experiments.compare`, read back
from the cells' workdirs (results.json and compare.json), so that the table
can be rewritten at any time from what is finished; a cell whose workdir is
gone keeps its line of the previous comparison.jsonl."""

import json
import os
from typing import Any, Dict, List, Optional

from experiments import comparison

COMPARE_JSON = "compare.json"  # per cell: budget, devices, seconds, classes
NAMES = {
  "maml": "MAML",
  "fomaml": "FOMAML",
  "meta_sgd": "Meta-SGD",
  "meta_curvature": "Meta-Curvature",
  "anil": "ANIL",
  "imaml": "iMAML",
  "protomaml": "ProtoMAML",
  "reptile": "Reptile",
  "meta_learner_lstm": "Meta-Learner LSTM",
  "protonet": "ProtoNets",
  "matching_net": "Matching Nets",
  "r2d2": "R2-D2",
  "lrd2": "LR-D2",
  "baseline": "Baseline",
  "baseline_pp": "Baseline++",
  "snail": "SNAIL",
  "mann": "MANN",
  "metaoptnet": "MetaOptNet",
}


def cell_dir(root: str, learner: str, cell: str) -> str:
  return os.path.join(root, learner, cell)


def read_json(path: str) -> Optional[Dict[str, Any]]:
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (a temporary file, renamed)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def cell_line(root: str, learner: str, cell: str) -> Optional[Dict[str, Any]]:
  """The jsonl line of a finished cell (None if it is not finished)."""
  workdir = cell_dir(root, learner, cell)
  results = read_json(os.path.join(workdir, "results.json"))
  if results is None:
    return None
  info = read_json(os.path.join(workdir, COMPARE_JSON)) or {}
  trained = results.get("trained_in")
  timing = info
  if trained:  # the training time is that of the run it tests
    timing = (
      read_json(os.path.join(cell_dir(root, learner, trained), COMPARE_JSON))
      or {}
    )
  config = results["config"]
  ways, shots = comparison.cell_sizes(cell)
  return {
    "learner": learner,
    "cell": cell,
    "ways": ways,
    "shots": shots,
    "metric": results["metric"],
    "mean": results["mean"],
    "ci95": results["ci95"],
    "num_test_episodes": results["episodes"],
    "budget": info.get("budget"),
    "num_steps": config["num_steps"],
    "meta_batch_size": config["meta_batch_size"],
    "device": " + ".join(timing.get("devices", [])) or None,
    "train_seconds": timing.get("seconds"),
    "selected_step": results.get("selected_step"),
    "trained_in": trained,
    "config": comparison.config_name(learner, cell),
    "paper": config["paper_result"],
    "classes": info.get("classes"),
    "workdir": os.path.join(learner, cell),
  }


def _percent(line: Optional[Dict[str, Any]]) -> str:
  if line is None:
    return "-"
  return f"{100 * line['mean']:.2f} +- {100 * line['ci95']:.2f}"


def _row(learner: str, lines: List[Optional[Dict[str, Any]]]) -> str:
  done = [l for l in lines if l is not None]
  trained = [l for l in done if not l["trained_in"]]
  seconds = sum(l["train_seconds"] or 0 for l in trained)
  runs = f"{len(trained)} run{'s' if len(trained) > 1 else ''}"
  time = f"{seconds / 60:.0f} min ({runs})" if trained else "-"
  devices = sorted({l["device"] for l in done if l["device"]})
  papers = [
    comparison.paper_figure(learner, c).split(" (")[0] for c in comparison.CELLS
  ]
  source = comparison.PAPER.get(learner, ("",))[0]
  paper = " / ".join(papers) + (f" ({source})" if source else "")
  cells = [_percent(l) for l in lines]
  return (
    f"| {NAMES[learner]} | {' | '.join(cells)} | {_updates(lines)} | "
    f"{time} | {', '.join(devices) or '-'} | {paper} |"
  )


def _updates(lines: List[Optional[Dict[str, Any]]]) -> str:
  """Each cell's meta-steps x tasks a step ("-": not run; "=5w1s": tests
  that cell's run): at one budget of tasks, a learner with a larger
  meta-batch makes fewer updates."""

  def one(line):
    if line is None:
      return "-"
    if line["trained_in"]:
      return f"={line['trained_in']}"
    return f"{line['num_steps']}x{line['meta_batch_size']}"

  return " / ".join(map(one, lines))


def _header(lines, budget: comparison.Budget, command: str) -> List[str]:
  done = [l for l in lines if l is not None]
  classes = sorted(
    {json.dumps(l["classes"], sort_keys=True) for l in done if l["classes"]}
  )
  split = (
    "; ".join(
      " / ".join(str(c[k]) for k in ("train", "val", "test"))
      for c in map(json.loads, classes)
    )
    or "-"
  )
  devices = sorted({l["device"] for l in done if l["device"]})
  return [
    "# Few-shot learners compared on Omniglot",
    "",
    f"Written by `{command}` (do not edit; rerun it). Every learner "
    "trains on the same split, backbone, image size and number of "
    "training tasks, keeps its paper's recipe otherwise (episode shapes, "
    "meta-batch, inner loop, optimizer), selects its state on the "
    "validation classes and is tested on the same test episodes; the "
    "shared fields and why: `experiments/comparison.py`.",
    "",
    f"- Budget `{budget.name}`: {budget.tasks:,} training tasks per run "
    "(`num_steps x meta_batch_size`; the Baselines: mini-batches of 128 "
    f"images); {comparison.VALIDATIONS} validations of "
    f"{budget.val_episodes} episodes on the validation classes, the best "
    "state tested.",
    f"- Test: {budget.eval_episodes} episodes of the test classes (15 "
    "queries per class at 5-way, 5 at 20-way), mean accuracy (%) with "
    "its 95 % interval (1.96 std / sqrt(n)).",
    f"- Data: Omniglot, the seeded split, {split} classes (meta-train / "
    f"meta-val / meta-test, rotations as new classes), "
    f"{budget.image_size}x{budget.image_size} images; Conv4 with "
    f"{budget.filters} filters.",
    f"- Device: {', '.join(devices) or '-'}.",
    "",
  ]


NOTES = [
  "",
  "Notes:",
  "",
  "- `-`: a cell not run yet. Training time: the row's runs, data "
  "loading, compilation, validation and test included.",
  "- ProtoNets, Matching Nets, R2-D2 and LR-D2 train on 60-way episodes "
  "whatever the test's ways: their 20-way cells test the 5-way run of the "
  "same shots "
  "(selected on 5-way validation).",
  "- The Meta-Learner LSTM and MANN configs have no 20-way variant: their "
  "20-way cells use the 5-way recipe with 20 ways.",
  "- MANN's paper scores accuracy by instance, another protocol "
  "(`experiments.mann_instances`); its row here is the N-way K-shot query "
  "accuracy of every other row.",
  "- Steps x tasks a step: a budget of tasks gives a learner with a "
  "larger meta-batch fewer updates (the Baselines: mini-batches of 128 "
  "images, one a step). A small budget ranks what each learner learns "
  "from that many tasks, not what it reaches: docs/results.md has the "
  "learners' longer runs, and what each gap comes from.",
  "- SNAIL and MANN train from a random Conv4 here, end to end from "
  "pixels as in their papers, as every learner does (no "
  "`embedding_init`).",
]


def previous_lines(
  output: str, budget: comparison.Budget
) -> Dict[tuple, Dict[str, Any]]:
  """The lines of `<output>/comparison.jsonl` at `budget`, by (learner,
  cell): a table's cells outlive their workdirs (a new machine, a deleted
  scratch folder) through its jsonl, so rewriting the table from a workdir
  that lacks some cells keeps their figures instead of dropping them."""
  path = os.path.join(output, "comparison.jsonl")
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    lines = [json.loads(l) for l in f if l.strip()]
  return {
    (l["learner"], l["cell"]): dict(l, kept=True)
    for l in lines
    if l.get("budget") == comparison.describe(budget)
  }


def write(
  root: str,
  learners: List[str],
  budget: comparison.Budget,
  output: str,
  command: str,
) -> None:
  """Writes `<output>/comparison.md` and `comparison.jsonl` from the
  finished cells of `learners` under `root`; a cell not finished there
  keeps its line of the previous `<output>/comparison.jsonl` (same budget),
  marked `"kept": true`."""
  previous = previous_lines(output, budget)
  lines = {
    l: [cell_line(root, l, c) or previous.get((l, c)) for c in comparison.CELLS]
    for l in learners
  }
  every = [line for row in lines.values() for line in row]
  kept = sum(1 for line in every if line is not None and line.get("kept"))
  table = _header(every, budget, command) + [
    "| learner | "
    + " | ".join(comparison.CELLS)
    + " | steps x tasks a step | training time | device | paper ("
    + " / ".join(comparison.CELLS)
    + ", full Omniglot) |",
    "| --- " * (len(comparison.CELLS) + 5) + "|",
  ]
  table += [_row(l, lines[l]) for l in learners] + NOTES
  if kept:
    table.append(
      f"- {kept} of the cells above come from the previous comparison.jsonl: "
      "their workdirs are not under the workdir this table was written from "
      "(each line keeps its `workdir`, relative to the table's root then)."
    )
  os.makedirs(output, exist_ok=True)
  write_text(os.path.join(output, "comparison.md"), "\n".join(table) + "\n")
  write_text(
    os.path.join(output, "comparison.jsonl"),
    "".join(json.dumps(line) + "\n" for line in every if line is not None),
  )
