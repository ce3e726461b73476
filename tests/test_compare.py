"""experiments.compare: the cells' configs share what the table says they
share."""

import json
import math

import pytest

from experiments import comparison
from metajax import from_config


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config


def _every_cell(budget):
  return [(l, c, comparison.cell_config(l, c, budget))
          for l in comparison.LEARNERS for c in comparison.CELLS]


# ------------------------------------------------------ the cells' configs


@pytest.mark.parametrize("budget", sorted(comparison.BUDGETS))
def test_every_cell_shares_the_fields_and_the_number_of_tasks(budget):
  budget = comparison.BUDGETS[budget]
  cells = _every_cell(budget)
  for field in comparison.SHARED_FIELDS:
    values = {json.dumps(_get(c, field).to_dict() if field == "data_kwargs"
                         else _get(c, field)) for _, _, c in cells}
    assert len(values) == 1, (field, values)
  assert {c.image_size for _, _, c in cells} == {budget.image_size}
  assert {c.model_kwargs.filters for _, _, c in cells} == {budget.filters}
  for learner, cell, c in cells:
    ways, shots = comparison.cell_sizes(cell)
    assert (c.test_ways, c.test_shots) == (ways, shots), (learner, cell)
    assert c.test_queries == {5: 15, 20: 5}[ways]
    assert c.select_on_validation and c.val_every == max(
        1, c.num_steps // comparison.VALIDATIONS)
    if learner in ("baseline", "baseline_pp"):  # one mini-batch = one task
      assert (c.num_steps, c.meta_batch_size) == (budget.tasks, 1)
    else:
      assert c.num_steps == math.ceil(budget.tasks / c.meta_batch_size)
      if budget.name != "smoke":  # exact: tasks divide by every meta-batch
        assert c.num_steps * c.meta_batch_size == budget.tasks, (learner, cell)
    # The norm stays the learner's: off only where images are embedded alone.
    assert c.model_kwargs.norm == (learner not in ("snail", "mann"))


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
    assert comparison.training_difference(
        comparison.cell_config(learner, cell, budget),
        comparison.cell_config(learner, trained, budget)) == []
  # The check can fail: MAML's 20-way run is not its 5-way one.
  assert "ways" in comparison.training_difference(
      comparison.cell_config("maml", "20w1s", budget),
      comparison.cell_config("maml", "5w1s", budget))


def test_every_cpu_cell_validates(omniglot_data_dir, monkeypatch):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  for learner, cell, config in _every_cell(comparison.BUDGETS["cpu"]):
    assert from_config.validate(config).eval_episodes == 600, (learner, cell)


@pytest.mark.parametrize("learner", ["maml", "protonet", "matching_net",
                                     "reptile"])
def test_paper_figures_agree_with_the_configs(learner):
  for cell in comparison.CELLS:
    figure = comparison.paper_figure(learner, cell).split(" (")[0]
    assert figure in comparison.learner_config(learner, cell).paper_result
