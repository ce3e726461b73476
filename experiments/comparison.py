"""The fairness choices of `experiments.compare`: one table, one protocol.

Every cell (a learner at N-way K-shot) starts from the learner's own config
file (`experiments/configs/<file>.py:<cell>`), which keeps the learner's
paper recipe: its episode shapes (ProtoNets' 60-way training episodes,
Reptile's extra training shots), meta-batch, inner loop, outer optimizer
and schedule. Only these fields are then set, the same in every cell:

- The data: Omniglot's default seeded split of the small background sets
  (`data_kwargs` of `maml_omniglot.omniglot_config`: 145 / 24 / 73
  characters x 4 rotations for meta-train / meta-val / meta-test), at
  `image_size` 28.
- The backbone: Conv4 with `model_kwargs` of `maml_omniglot.omniglot_config`
  (64 filters, stride-2 convolutions, batch statistics, float32). One
  exception: `norm` and `pooling` stay the learner's (`OWN_MODEL_KWARGS`),
  because SNAIL and MANN embed each image alone through their paper's
  max-pool Conv4 with per-image batch norm (see snail_omniglot.py). The Meta-Learner
  LSTM's config has 32 filters (its paper); here it gets 64 like the rest.
- The budget, in training tasks: `num_steps x meta_batch_size` is the
  budget's `tasks` for every episodic learner (each keeps its own
  meta-batch; `num_steps = ceil(tasks / meta_batch_size)`, exact when
  `tasks` is a multiple of 480). The Baselines (`train_on ==
  "class_batches"`) pre-train on mini-batches of 128 images of all
  meta-train classes, and one mini-batch counts as one task (`num_steps =
  tasks`): 128 images lie between a 5-way episode of the MAML configs (80
  or 100 images) and a 20-way one (120 or 200).
- Model selection on the validation classes, for every learner: validation
  at the cell's test sizes every `num_steps // VALIDATIONS` steps (the same
  points of the budget for all), `val_episodes` episodes, and the test
  evaluates the state of the best validation (`select_on_validation`).
- The test: the cell's ways and shots, 15 queries per class at 5-way and
  5 at 20-way, `eval_episodes` episodes (600, except the smoke budget) of
  the test characters, with the same seed, so every learner meets the same
  test episodes.

The Meta-Learner LSTM and MANN configs have no 20-way variants; their
20-way cells take the 5-way config of the same shots with `ways = 20` (and
at most 5 training queries per class, as maml_omniglot's 20-way recipe).

A learner whose trained model does not depend on the test's ways is trained
once and tested at both (`SHARED`): ProtoNets, Matching Nets, R2-D2 and
LR-D2 train on 60-way episodes whatever the test's ways (their 5-way and
20-way configs differ only in test_* fields), so their 20-way cells test the
5-way cell's run; model selection then used that run's 5-way validation. The
Baselines' pre-training does not depend on the cell either, but their
model selection does (validation at the cell's sizes) and a run is cheap,
so each of their cells trains its own. MetaOptNet trains on 5-shot episodes
whatever the test's shots (the paper's recipe), so its 1-shot cells test
the 5-shot cell's run of the same ways (selected on 5-shot validation).

Every cell has seed 0. The budgets are named (`BUDGETS`); a table's
workdir holds one budget (`experiments.compare` refuses to mix them).
"""

import importlib
import json
import math
from typing import Dict, List, NamedTuple, Optional, Tuple

from flax import traverse_util
import ml_collections

from experiments.configs import maml_omniglot
from metajax import from_config

CELLS = ("5w1s", "5w5s", "20w1s", "20w5s")
CONFIG_FILES = {  # learner -> its config file in experiments/configs/
  "maml": "maml_omniglot",
  "fomaml": "fomaml_omniglot",
  "meta_sgd": "meta_sgd_omniglot",
  "meta_curvature": "meta_curvature_omniglot",
  "anil": "anil_omniglot",
  "protomaml": "protomaml_omniglot",
  "reptile": "reptile_omniglot",
  "meta_learner_lstm": "meta_lstm_omniglot",
  "protonet": "protonet_omniglot",
  "matching_net": "matching_net_omniglot",
  "r2d2": "r2d2_omniglot",
  "lrd2": "lrd2_omniglot",
  "baseline": "baseline_omniglot",
  "baseline_pp": "baseline_pp_omniglot",
  "snail": "snail_omniglot",
  "mann": "mann_omniglot",
  "imaml": "imaml_omniglot",
  "metaoptnet": "metaoptnet_omniglot",
}
LEARNERS = tuple(CONFIG_FILES)  # the table's rows, in this order
NO_20_WAY = ("meta_learner_lstm", "mann")  # configs without 20-way variants
# (learner, cell) -> the cell whose trained run it tests.
SHARED = {
  ("protonet", "20w1s"): "5w1s",
  ("protonet", "20w5s"): "5w5s",
  ("matching_net", "20w1s"): "5w1s",
  ("matching_net", "20w5s"): "5w5s",
  ("r2d2", "20w1s"): "5w1s",
  ("r2d2", "20w5s"): "5w5s",
  ("lrd2", "20w1s"): "5w1s",
  ("lrd2", "20w5s"): "5w5s",
  ("metaoptnet", "5w1s"): "5w5s",
  ("metaoptnet", "20w1s"): "20w5s",
}
VALIDATIONS = 5  # validations per run, at the same fractions of the budget
IMAGE_SIZE = 28
TEST_QUERIES = {5: 15, 20: 5}  # queries per class of a test episode, by ways
# Backbone options each cell keeps from its learner's config: SNAIL and MANN
# embed each image alone through the paper's max-pool Conv4 with per-image
# batch norm, which the stride-2 net of the others cannot replace (its mean
# readout of per-image-normalized features leaves them at chance).
OWN_MODEL_KWARGS = ("norm", "pooling")


class Budget(NamedTuple):
  """A named budget: training tasks per cell and the evaluation sizes."""

  name: str
  tasks: int  # num_steps x meta_batch_size (Baselines: mini-batches)
  val_episodes: int
  eval_episodes: int
  filters: int = 64  # Conv4's
  image_size: int = IMAGE_SIZE


BUDGETS = {
  # The whole table in about 8 hours on 2 CPU cores shared with other
  # jobs (each cell's steps timed there; less on idle cores).
  "cpu": Budget("cpu", tasks=960, val_episodes=100, eval_episodes=600),
  "gpu": Budget("gpu", tasks=9_600, val_episodes=100, eval_episodes=600),
  # Tests only: a tiny Conv4 on small images, a few tasks and episodes.
  "smoke": Budget(
    "smoke",
    tasks=32,
    val_episodes=2,
    eval_episodes=10,
    filters=8,
    image_size=14,
  ),
}

# The papers' figures (%, full Omniglot), "-" where the paper has none for
# this protocol: the Baseline paper tests Omniglot only cross-domain, ANIL's
# gives no Omniglot table we reproduce, Ravi & Larochelle report
# miniImageNet only, MANN's paper scores accuracy by instance, and LR-D2's
# (the R2-D2 paper's) figures are on miniImageNet and CIFAR-FS only.
PAPER = {
  "maml": (
    "MAML paper, Table 1",
    ("98.7 +- 0.4", "99.9 +- 0.1", "95.8 +- 0.3", "98.9 +- 0.2"),
  ),
  "fomaml": (
    "MAML paper, Table 1, first order",
    ("98.3 +- 0.5", "99.2 +- 0.2", "89.4 +- 0.5", "97.9 +- 0.1"),
  ),
  "meta_sgd": (
    "Meta-SGD paper, Table 1",
    ("99.53 +- 0.26", "99.93 +- 0.09", "95.93 +- 0.38", "98.97 +- 0.19"),
  ),
  "meta_curvature": (
    "Meta-Curvature authors' NeurIPS 2019 poster, Omniglot table, MC one "
    "model (quoted from the poster, not re-checked against the paper)",
    ("99.77 +- 0.17", "99.79 +- 0.10", "97.86 +- 0.26", "99.24 +- 0.07"),
  ),
  "reptile": (
    "Reptile paper, Table 1, transductive",
    ("97.68 +- 0.04", "99.48 +- 0.06", "89.43 +- 0.14", "97.12 +- 0.32"),
  ),
  "protonet": ("ProtoNets paper, Table 1", ("98.8", "99.7", "96.0", "98.9")),
  "matching_net": (
    "Matching Nets paper, Table 1",
    ("98.1", "98.9", "93.8", "98.5"),
  ),
  "snail": ("SNAIL paper, Table 1", ("99.07", "99.78", "97.64", "99.36")),
  "r2d2": (
    "R2-D2 paper, Table 1 (quoted, not re-checked against the paper)",
    ("98.6 +- 0.1", "99.7 +- 0.0", "94.7 +- 0.3", "98.9 +- 0.0"),
  ),
  "imaml": (
    "iMAML paper, Table 2, GD",
    ("99.16 +- 0.35", "99.67 +- 0.12", "94.46 +- 0.42", "98.69 +- 0.1"),
  ),
  # Not Omniglot's: the MetaOptNet paper has none; its CIFAR-FS figures.
  "metaoptnet": (
    "MetaOptNet paper, Table 2, MetaOptNet-SVM on CIFAR-FS with ResNet-12: "
    "another dataset and backbone (quoted, not re-checked against the "
    "paper); no Omniglot or 20-way figures",
    ("72.0 +- 0.7", "84.2 +- 0.5", "-", "-"),
  ),
}


def cell_sizes(cell: str) -> Tuple[int, int]:
  """(ways, shots) of a cell name such as "20w5s"."""
  if cell not in CELLS:
    raise ValueError(f"unknown cell {cell!r}; valid: {', '.join(CELLS)}.")
  ways, shots = cell[:-1].split("w")
  return int(ways), int(shots)


def config_name(learner: str, cell: str) -> str:
  """The config file and variant a cell starts from."""
  ways, shots = cell_sizes(cell)
  path = f"experiments/configs/{CONFIG_FILES[learner]}.py"
  if ways == 20 and learner in NO_20_WAY:
    return f"{path}:5w{shots}s with ways=20"
  return f"{path}:{cell}"


def paper_figure(learner: str, cell: str) -> str:
  """The paper's figure for the cell ("-": none), and where it is from."""
  if learner not in PAPER:
    return "-"
  source, figures = PAPER[learner]
  return f"{figures[CELLS.index(cell)]} ({source})"


def learner_config(learner: str, cell: str) -> ml_collections.ConfigDict:
  """The learner's own config of the cell (its paper recipe)."""
  if learner not in CONFIG_FILES:
    raise ValueError(
      f"unknown learner {learner!r}; valid: {', '.join(LEARNERS)}."
    )
  ways, shots = cell_sizes(cell)
  module = importlib.import_module(
    f"experiments.configs.{CONFIG_FILES[learner]}"
  )
  if ways == 20 and learner in NO_20_WAY:
    c = module.get_config(f"5w{shots}s")
    c.ways = 20
    c.queries = min(c.queries, TEST_QUERIES[20])
    return c
  return module.get_config(cell)


def _shared_fields(budget: Budget) -> ml_collections.ConfigDict:
  """The data and backbone fields every cell gets (from maml_omniglot)."""
  base = maml_omniglot.omniglot_config("5w1s")
  shared = ml_collections.ConfigDict(
    {
      "dataset": base.dataset,
      "data_kwargs": base.data_kwargs.to_dict(),
      "model": base.model,
      "model_kwargs": base.model_kwargs.to_dict(),
      "image_size": budget.image_size,
      "seed": 0,
    }
  )
  shared.model_kwargs.filters = budget.filters
  return shared


def num_steps(config, budget: Budget) -> int:
  """Steps of `budget.tasks` tasks (mini-batches for class-batch learners)."""
  if from_config.build_learner(config, num_classes=2).train_on != "episodes":
    return budget.tasks
  return math.ceil(budget.tasks / config.meta_batch_size)


def cell_config(
  learner: str, cell: str, budget: Budget
) -> ml_collections.ConfigDict:
  """The learner's config of the cell with the shared fields set."""
  c = learner_config(learner, cell)
  ways, shots = cell_sizes(cell)
  shared = _shared_fields(budget)
  own = {k: c.model_kwargs.get(k) for k in OWN_MODEL_KWARGS}
  for name, value in shared.items():
    c[name] = value
  for k, value in own.items():  # SNAIL and MANN embed each image alone
    if value is not None:
      c.model_kwargs[k] = value
  c.test_ways, c.test_shots = ways, shots
  c.test_queries = TEST_QUERIES[ways]
  c.num_steps = num_steps(c, budget)
  c.val_every = max(1, c.num_steps // VALIDATIONS)
  c.val_episodes = budget.val_episodes
  c.select_on_validation = True
  c.checkpoint_every = c.val_every
  c.log_every = min(100, c.val_every)
  c.eval_episodes = budget.eval_episodes
  c.paper_result = paper_figure(learner, cell)
  return c


# The fields a cell's saved config must hold with the same value in every
# cell of a table (tests/test_compare.py reads them back).
SHARED_FIELDS = (
  "dataset",
  "data_kwargs",
  "model",
  "image_size",
  "seed",
  "model_kwargs.filters",
  "model_kwargs.conv_impl",
  "model_kwargs.compute_dtype",
  "val_episodes",
  "select_on_validation",
  "eval_episodes",
)


# Fields two cells may differ in and still share one trained run.
TEST_FIELDS = ("test_ways", "test_shots", "test_queries", "paper_result")


def training_difference(a, b) -> List[str]:
  """The fields, other than TEST_FIELDS, in which configs `a` and `b` differ
  (their options' defaults filled in): [] when they train the same run."""
  a, b = (
    traverse_util.flatten_dict(
      json.loads(from_config.with_option_defaults(c).to_json()), sep="."
    )
    for c in (a, b)
  )
  return sorted(
    k for k in set(a) | set(b) if k not in TEST_FIELDS and a.get(k) != b.get(k)
  )


def trained_cell(learner: str, cell: str) -> Optional[str]:
  """The cell whose run this cell tests, or None if it trains its own."""
  return SHARED.get((learner, cell))


def describe(budget: Budget) -> Dict[str, object]:
  """The budget as the jsonl records it."""
  return {"name": budget.name, "tasks": budget.tasks}
