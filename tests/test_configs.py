"""The declarative configs: every config file, from_config's checks, the
short names, and runs of the format before learner_kwargs."""

import glob
import importlib
import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from experiments import comparison
from experiments import legacy_configs
from experiments.configs import _base as base
from experiments.configs import maml_omniglot
from experiments.configs import maml_sinusoid
from experiments.configs import mann_omniglot
from experiments.configs import snail_omniglot
from metajax import from_config
from metajax import learners
from metajax import runs
from tests.conftest import REPO

LEGACY = REPO / "tests" / "data" / "legacy_configs"
CONFIGS = sorted(
  pathlib.Path(p).stem
  for p in glob.glob(str(REPO / "experiments/configs/*.py"))
  if not pathlib.Path(p).stem.startswith("_")
  and pathlib.Path(p).stem != "l2l_quadratic"
)


def _config(name, variant=""):
  return importlib.import_module(f"experiments.configs.{name}").get_config(
    variant
  )


def _as_json(config):
  return json.loads(json.dumps(from_config.complete(config).to_dict()))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_validates_and_builds_its_learners(
  name, monkeypatch, omniglot_data_dir
):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  for variant in ("", "smoke"):
    config = from_config.validate(_config(name, variant))
    assert config.learner in learners.FACTORIES
    learner = from_config.build_learner(config, num_classes=10)
    test_learner = from_config.build_learner(config, test=True, num_classes=10)
    assert learner.metric_name == test_learner.metric_name


# What a config changed after its legacy fixture was written (the
# converter keeps what the old run had). Issue 21: SNAIL and MANN embed
# through the paper's max-pooling Conv4 with per-image batch norm, which
# needs images of at least 16x16 (their smoke variants were 14x14).
_OLD_CONV4 = {"model_kwargs": {"pooling": "stride", "norm": False}}
# ADDED: an option the config sets since (the fixture's run used the
# learner's default of its time). Issue 21: the Baselines' head_init.
ADDED = object()
CHANGED_SINCE = {
  "snail_omniglot.smoke": dict(_OLD_CONV4, image_size=14),
  # Issue 21: MANN trains on the paper's online loss.
  "mann_omniglot.smoke": dict(
    _OLD_CONV4, image_size=14, learner_kwargs={"online_loss": False}
  ),
  "baseline_omniglot.smoke": {"learner_kwargs": {"head_init": ADDED}},
  "baseline_pp_omniglot.smoke": {"learner_kwargs": {"head_init": ADDED}},
  # Issue 21: Matching Nets' scale 10 -> 30.
  "matching_net_omniglot.smoke": {"learner_kwargs": {"scale": 10.0}},
  "matching_net_omniglot.fce_smoke": {"learner_kwargs": {"scale": 10.0}},
}


@pytest.mark.parametrize(
  "path", sorted(LEGACY.glob("*.json")), ids=lambda p: p.stem
)
def test_legacy_configs_convert_to_the_current_configs(path):
  """The converter reads each config as the flat format wrote it (the
  fixtures were written by the configs before learner_kwargs) and gives the
  current config of the same name and variant: the two formats build the
  same runs."""
  name, variant = path.stem.split(".")
  converted = _as_json(legacy_configs.convert(json.loads(path.read_text())))
  current = _as_json(_config(name, variant))
  if current["num_classes"] is None and converted["num_classes"] is not None:
    current["num_classes"] = converted["num_classes"]  # filled from the data
  converted.pop("paper_result"), current.pop("paper_result")
  for field, value in CHANGED_SINCE.get(path.stem, {}).items():
    current[field] = (
      dict(current[field], **value) if isinstance(value, dict) else value
    )
    if isinstance(value, dict):
      current[field] = {
        k: v for k, v in current[field].items() if v is not ADDED
      }
  assert converted == current


def test_complete_fills_defaults_and_names_unknown_fields():
  config = from_config.complete({"learner": "protonet", "ways": 20})
  assert config.ways == 20 and config.meta_batch_size == 32
  assert config.learner_kwargs.to_dict() == {}
  with pytest.raises(
    from_config.ConfigError,
    match=r"config.inner_lrr is not a field.*'inner_lr'",
  ):
    from_config.complete({"learner": "maml", "inner_lrr": 0.1})


def test_short_names_set_the_learner_options():
  config = maml_omniglot.get_config("smoke")
  config.inner_lr = 0.25  # what --config.inner_lr=0.25 does
  config.test_inner_steps = 7
  assert config.learner_kwargs.inner_lr == 0.25
  assert config.test_learner_kwargs.inner_steps == 7
  # Without a link (a config written by hand) the short name still counts.
  plain = from_config.complete(
    {"learner": "maml", "inner_lr": 0.5, "learner_kwargs": {"inner_lr": 0.1}}
  )
  assert from_config.learner_options(plain)["inner_lr"] == 0.5


def test_factory_options_and_their_errors():
  config = maml_sinusoid.get_config("smoke")
  config.inner_lr = float("inf")  # as --config.inner_lr=inf
  with pytest.raises(
    from_config.ConfigError,
    match=r"config.learner='maml': inner_lr must be a "
    r"finite number > 0, got inf",
  ):
    from_config.validate(config)
  config = maml_sinusoid.get_config("smoke")
  config.learner_kwargs.inner_lrr = 0.1
  with pytest.raises(
    from_config.ConfigError,
    match=r"learner_kwargs of 'maml'.*inner_lrr.*inner_lr",
  ):
    from_config.validate(config)
  config = maml_sinusoid.get_config("smoke")
  config.learner = "protonet"
  config.learner_kwargs = ml_collections.ConfigDict()
  config.inner_lr = config.inner_steps = None
  with pytest.raises(from_config.ConfigError, match="is a classifier"):
    from_config.validate(config)
  config.learner = "knn"
  with pytest.raises(
    from_config.ConfigError, match=r"config.learner must be one of .*'maml'"
  ):
    from_config.validate(config)


def test_test_time_learner_must_keep_the_meta_parameters():
  config = snail_omniglot.get_config("smoke")
  config.test_shots = 5  # SNAIL's depth follows ways * shots + 1
  with pytest.raises(from_config.ConfigError, match="test_shots=5"):
    from_config.validate(config)
  config = mann_omniglot.get_config("smoke")
  config.test_ways = 20  # MANN has one output per way
  with pytest.raises(from_config.ConfigError, match="test_ways=20"):
    from_config.validate(config)
  config = maml_omniglot.get_config("smoke")
  config.test_ways = 20  # MAML's head has ways outputs: the same error
  with pytest.raises(from_config.ConfigError, match="test_ways=20"):
    from_config.validate(config)
  config = maml_omniglot.get_config("smoke")
  config.freeze_embedding = True
  with pytest.raises(
    from_config.ConfigError,
    match="freeze_embedding is for learners with an embedding",
  ):
    from_config.validate(config)


def test_run_fields_are_checked():
  for field, value, message in (
    ("ways", 1, "config.ways must be an integer >= 2"),
    ("outer_lr", float("nan"), "config.outer_lr must be a finite number"),
    ("outer_opt", "rmsprop", "config.outer_opt must be one of 'adam', 'sgd'"),
    ("select_on_validation", 1, "config.select_on_validation must be a bool"),
  ):
    config = maml_omniglot.get_config("smoke")
    with config.ignore_type():
      config[field] = value
    with pytest.raises(from_config.ConfigError, match=message):
      from_config.validate(config)
  config = maml_omniglot.get_config("smoke")
  config.model_kwargs.pooling = "avg"
  with pytest.raises(
    from_config.ConfigError, match=r"config.model='conv4'.*pooling"
  ):
    from_config.validate(config)


def test_a_legacy_run_is_refused_with_the_command_then_converts(
  tmp_path, omniglot_data_dir
):
  config = maml_omniglot.get_config("smoke")
  config.data_dir = omniglot_data_dir
  config.num_steps = 2
  workdir = str(tmp_path / "run")
  runs.train_and_evaluate(config, workdir)
  current = runs.load_run(workdir)
  legacy = json.loads((LEGACY / "maml_omniglot.smoke.json").read_text())
  legacy.update(num_steps=2, data_dir=omniglot_data_dir)
  (tmp_path / "run" / "config.json").write_text(json.dumps(legacy))
  with pytest.raises(
    ValueError,
    match=r"before the declarative configs.*"
    r"python -m experiments.convert_config --workdir=",
  ):
    runs.load_run(workdir)
  with pytest.raises(ValueError, match="convert_config"):  # and on resume
    runs.train_and_evaluate(config, workdir)
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.convert_config",
      f"--workdir={workdir}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert json.loads((tmp_path / "run" / "config.legacy.json").read_text()) == (
    legacy
  )
  converted = runs.load_run(workdir)
  for a, b in zip(
    *map(
      lambda r: __import__("jax").tree.leaves(r.meta_params),
      (current, converted),
    )
  ):
    np.testing.assert_array_equal(a, b)
  x = np.random.default_rng(0).integers(0, 256, (5, 14, 14, 1), np.uint8)
  np.testing.assert_array_equal(
    runs.predict(current, x, np.arange(5), x),
    runs.predict(converted, x, np.arange(5), x),
  )
  # The converted run resumes under the current config (nothing to do).
  assert runs.train_and_evaluate(config, workdir)["episodes"] == 6


def test_binary_reports_user_errors_in_one_line(tmp_path, omniglot_data_dir):
  """A config value that only the data can refuse (more ways than the
  split's classes) ends in one line naming it, not a traceback."""
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--noprogress",
      "--config=experiments/configs/maml_omniglot.py:smoke",
      "--config.ways=100000",
      f"--workdir={tmp_path / 'run'}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "METAJAX_DATA_DIR": omniglot_data_dir},
  )
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr
  assert (
    proc.stderr.strip()
    .splitlines()[-1]
    .startswith("Invalid config: config.ways")
  )
  assert "100000" in proc.stderr


def test_base_link_keeps_one_value():
  c = base.get_config()
  base.link(c, "inner_lr", 0.4)
  base.link(c, "test_inner_steps", 3, option="inner_steps", test=True)
  c.learner_kwargs.inner_lr = 0.2
  assert c.inner_lr == 0.2
  assert json.loads(c.to_json())["test_learner_kwargs"] == {"inner_steps": 3}


@pytest.mark.parametrize("learner", sorted(comparison.PAPER))
def test_each_config_quotes_its_own_papers_figures(learner):
  """A config's paper_result gives its learner's paper figure (the one
  experiments.comparison quotes), not another learner's (FOMAML and
  Meta-SGD printed MAML's before issue 21)."""
  for cell in comparison.CELLS:
    figure = comparison.PAPER[learner][1][comparison.CELLS.index(cell)]
    assert figure in comparison.learner_config(learner, cell).paper_result, (
      learner,
      cell,
    )
