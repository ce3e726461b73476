"""The notebooks in colabs/: stored clean, and run top to bottom at a tiny size.

Each notebook has one cell tagged "parameters" (UPPER_CASE names, real-run
defaults); the run here appends the CI-sized values below to it and executes
the notebook with nbclient in a python3 kernel. The last cell of each notebook
asserts something about its results, so a wrong result fails the test.
"""

import os
import time

import nbformat
import pytest

from tests.conftest import REPO

COLABS = REPO / "colabs"

# Notebook -> parameter overrides for CI (each run well under 2 minutes on
# 2 CPU cores).
CI_PARAMETERS = {
  "maml_sinusoid.ipynb": {
    "NUM_STEPS": 1500,
    "META_BATCH_SIZE": 25,
    "MAX_INNER_STEPS": 10,
    "EVAL_EPISODES": 100,
  },
  "few_shot_omniglot.ipynb": {
    "IMAGE_SIZE": 28,
    "FILTERS": 16,
    "QUERIES": 5,
    "TRAIN_WAYS": 20,
    "PROTO_STEPS": 200,
    "MAML_STEPS": 100,
    "MAML_META_BATCH": 4,
    "BASELINE_STEPS": 200,
    "BATCH_SIZE": 64,
    "EVAL_EPISODES": 100,
  },
  "black_box.ipynb": {
    "FILTERS": 16,
    "PROTO_STEPS": 150,
    "PROTO_WAYS": 5,
    "SNAIL_STEPS": 150,
    "SNAIL_META_BATCH": 8,
    "MANN_STEPS": 20,
    "MANN_META_BATCH": 4,
    "INSTANCES": 4,
    "EVAL_EPISODES": 100,
  },
  "learned_optimizer.ipynb": {
    "META_STEPS": 40,
    "BATCH_SIZE": 8,
    "HORIZON": 40,
    "UNROLL": 20,
    "OUTER_LR": 1e-2,
    "EVAL_TASKS": 30,
    "LR_GRID": (0.01, 0.03),
  },
}


# Notebook -> matplotlib figures it draws.
FIGURES = {
  "black_box.ipynb": 2,
  "maml_sinusoid.ipynb": 2,
  "few_shot_omniglot.ipynb": 3,
  "learned_optimizer.ipynb": 3,
}


def parameter_cells(nb):
  return [
    c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])
  ]


def test_every_notebook_has_ci_parameters():
  assert sorted(p.name for p in COLABS.glob("*.ipynb")) == sorted(CI_PARAMETERS)


@pytest.mark.parametrize("name", sorted(CI_PARAMETERS))
def test_notebook_is_stored_clean(name):
  nb = nbformat.read(COLABS / name, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [], f"{name}: a cell has stored outputs"
      assert cell.execution_count is None, (
        f"{name}: a cell has an execution count"
      )
  cells = parameter_cells(nb)
  assert len(cells) == 1, f"{name}: {len(cells)} cells tagged 'parameters'"
  source = cells[0].source
  for key in CI_PARAMETERS[name]:
    assert f"{key} = " in source, (
      f"{name}: parameter {key} not in the parameters cell"
    )
  assert nb.cells[-1].cell_type == "code" and "assert" in nb.cells[-1].source


@pytest.mark.parametrize("name", sorted(CI_PARAMETERS))
def test_notebook_runs(name, omniglot_data_dir, monkeypatch):
  import nbclient

  nb = nbformat.read(COLABS / name, as_version=4)
  (cell,) = parameter_cells(nb)
  overrides = "\n".join(f"{k} = {v!r}" for k, v in CI_PARAMETERS[name].items())
  cell.source = cell.source + "\n# CI overrides\n" + overrides + "\n"

  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  monkeypatch.setenv("MPLBACKEND", "Agg")
  path = os.environ.get("PYTHONPATH")
  monkeypatch.setenv(
    "PYTHONPATH", str(REPO) + (os.pathsep + path if path else "")
  )

  # A test-only first cell: the kernel compiles into the suite's compilation
  # cache (conftest's METAJAX_COMPILATION_CACHE), so a later run of the suite
  # loads the notebooks' programs instead of compiling them again.
  nb.cells.insert(
    0,
    nbformat.v4.new_code_cell(
      "from metajax import compilation_cache\ncompilation_cache.enable()"
    ),
  )
  # A test-only last cell: how many figures the notebook drew (under Agg,
  # plt.show() leaves them open).
  nb.cells.append(
    nbformat.v4.new_code_cell(
      "import matplotlib.pyplot as plt\nprint('FIGURES', len(plt.get_fignums()))"
    )
  )

  client = nbclient.NotebookClient(
    nb,
    timeout=600,
    kernel_name="python3",
    resources={"metadata": {"path": str(REPO)}},
  )
  start = time.time()
  client.execute()  # raises CellExecutionError if any cell fails
  print(f"{name}: {time.time() - start:.1f}s")
  print("".join(o.get("text", "") for o in nb.cells[-2].outputs))
  text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
  assert f"FIGURES {FIGURES[name]}" in text, text
