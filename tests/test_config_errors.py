"""Config validation: every bad field or combination fails before anything
is written; every config names its variants; the binary's bad input ends in
one line.

Each test backs a row of docs/reliability.md.
"""

import importlib
import subprocess
import sys

import pytest

from experiments.configs import maml_omniglot
from experiments.configs import maml_sinusoid
from metajax import from_config
from metajax import runs
from tests.conftest import REPO


# -------------------------------------------------------- config validation


def embedding_config(learner):
  module = importlib.import_module(f"experiments.configs.{learner}_omniglot")
  return module.get_config("smoke")


SINUSOID = lambda: maml_sinusoid.get_config("smoke")
OMNIGLOT = lambda: maml_omniglot.get_config("smoke")
EMBEDDING = lambda name: lambda: embedding_config(name)
BAD_FIELDS = [
  # (base config, field (a.b: option b of a), bad value, expected message)
  (SINUSOID, "model", "resnet", r"config.model must be one of 'conv4', 'mlp'"),
  (SINUSOID, "learner", "mamll", r"config.learner must be one of .*'maml'"),
  (
    SINUSOID,
    "dataset",
    "mnist",
    r"config.dataset must be one of 'sinusoid', "
    "'omniglot', 'cifar_fs'",
  ),
  (
    OMNIGLOT,
    "test_ways",
    1,
    "config.test_ways must be None or an integer >= 2, got 1",
  ),
  (
    OMNIGLOT,
    "test_shots",
    0,
    "config.test_shots must be None or an integer >= 1, got 0",
  ),
  (SINUSOID, "queries", 0, "config.queries must be an integer >= 1, got 0"),
  (
    OMNIGLOT,
    "test_queries",
    0,
    "config.test_queries must be None or an integer >= 1",
  ),
  (SINUSOID, "inner_steps", -1, "inner_steps must be an integer >= 0, got -1"),
  (
    OMNIGLOT,
    "test_inner_steps",
    -1,
    "inner_steps must be an integer >= 0, got -1",
  ),
  (SINUSOID, "inner_lr", 0.0, "inner_lr must be a finite number > 0, got 0.0"),
  (
    SINUSOID,
    "inner_lr",
    float("nan"),
    "inner_lr must be a finite number > 0, got nan",
  ),
  (
    SINUSOID,
    "inner_lr",
    float("inf"),
    "config.learner='maml': inner_lr must be a finite number > 0, got inf",
  ),
  (
    SINUSOID,
    "learner_kwargs.first_order_steps",
    -1,
    "first_order_steps must be an integer >= 0, got -1",
  ),
  (
    SINUSOID,
    "outer_lr",
    0.0,
    "config.outer_lr must be a finite number > 0, got 0.0",
  ),
  (
    SINUSOID,
    "outer_lr",
    float("inf"),
    "config.outer_lr must be a finite number > 0, got inf",
  ),
  (
    SINUSOID,
    "outer_opt",
    "rmsprop",
    "config.outer_opt must be one of 'adam', 'sgd'",
  ),
  (
    SINUSOID,
    "outer_lr_schedule",
    "cosine",
    "config.outer_lr_schedule must be one of 'constant', 'linear_decay'",
  ),
  (SINUSOID, "num_steps", -1, "config.num_steps must be an integer >= 0"),
  (
    SINUSOID,
    "eval_episodes",
    0,
    "config.eval_episodes must be an integer >= 1",
  ),
  (SINUSOID, "seed", -1, "config.seed must be an integer >= 0, got -1"),
  (
    SINUSOID,
    "checkpoint_every",
    0,
    "config.checkpoint_every must be an integer >= 1",
  ),
  (SINUSOID, "log_every", 0, "config.log_every must be an integer >= 1"),
  (SINUSOID, "val_every", -1, "config.val_every must be an integer >= 0"),
  (SINUSOID, "val_episodes", 0, "config.val_episodes must be an integer >= 1"),
  (
    SINUSOID,
    "model_kwargs.hidden",
    (40, 0),
    "config.model='mlp' with "
    "config.model_kwargs: each width of hidden must be an integer >= 1, "
    "got 0",
  ),
  (OMNIGLOT, "model_kwargs.filters", 0, "filters must be an integer >= 1"),
  (
    OMNIGLOT,
    "model_kwargs.pooling",
    "avg",
    "pooling must be one of 'stride', 'max'; got 'avg'",
  ),
  (
    OMNIGLOT,
    "model_kwargs.conv_impl",
    "cudnn",
    "conv_impl must be one of 'patches', 'xla'",
  ),
  (
    OMNIGLOT,
    "model_kwargs.compute_dtype",
    "float16",
    "compute_dtype must be one of 'float32', 'bfloat16'",
  ),
  (
    SINUSOID,
    "tasks_per_chunk",
    0,
    "config.tasks_per_chunk must be None or an integer >= 1",
  ),
  (
    SINUSOID,
    "num_devices",
    0,
    "config.num_devices must be None or an integer >= 1",
  ),
  (
    EMBEDDING("protonet"),
    "learner_kwargs.distance",
    "manhattan",
    "distance must be one of 'euclidean', 'cosine'; got 'manhattan'",
  ),
  (
    EMBEDDING("protonet"),
    "learner_kwargs.scale",
    0.0,
    "scale must be a finite number > 0, got 0.0",
  ),
  (
    EMBEDDING("matching_net"),
    "learner_kwargs.read_steps",
    0,
    "read_steps must be an integer >= 1, got 0",
  ),
  (
    EMBEDDING("baseline"),
    "batch_size",
    0,
    "config.batch_size must be None or an integer >= 1",
  ),
  (
    EMBEDDING("baseline"),
    "num_classes",
    1,
    "config.num_classes must be None or an integer >= 2",
  ),
  (
    EMBEDDING("baseline"),
    "learner_kwargs.finetune_lr",
    -1.0,
    "finetune_lr must be a finite number > 0, got -1.0",
  ),
  (
    EMBEDDING("baseline"),
    "learner_kwargs.transductive_steps",
    -1,
    "transductive_steps must be an integer >= 0, got -1",
  ),
  (
    EMBEDDING("baseline"),
    "learner_kwargs.transductive_lr",
    0.0,
    "transductive_lr must be a finite number > 0, got 0.0",
  ),
  (
    EMBEDDING("baseline"),
    "learner_kwargs.finetune_weight_decay",
    -1.0,
    "finetune_weight_decay must be a finite number >= 0",
  ),
]


def set_field(config, field, value):
  """config.<field> = value, for "name" or "kwargs_field.option"."""
  *parent, name = field.split(".")
  target = config[parent[0]] if parent else config
  with target.ignore_type():
    target[name] = value


@pytest.mark.parametrize(
  "base,field,value,match",
  BAD_FIELDS,
  ids=[f"{f}={v}" for _, f, v, _ in BAD_FIELDS],
)
def test_bad_config_field_fails_before_writing(
  tmp_path, base, field, value, match
):
  config = base()
  from_config.validate(config)  # the base is valid: the field alone is at fault
  set_field(config, field, value)
  with pytest.raises(ValueError, match=match):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
  "changes,match",
  [
    (
      dict(image_size=14, **{"model_kwargs.pooling": "max"}),
      "too small for four 'max' downsamplings",
    ),
    (
      {"learner_kwargs.lslr": True, "inner_steps": 0},
      "lslr learns one inner rate per inner step; it needs inner_steps >= 1, "
      "got 0",
    ),
  ],
  ids=["max_pool_image_size=14", "lslr_inner_steps=0"],
)
def test_bad_field_combinations_fail_before_writing(tmp_path, changes, match):
  config = OMNIGLOT()
  for field, value in changes.items():
    set_field(config, field, value)
  with pytest.raises(ValueError, match=match):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_too_few_examples_for_shots_and_queries(tmp_path, omniglot_data_dir):
  config = OMNIGLOT()
  config.data_dir = omniglot_data_dir
  config.shots, config.queries = 10, 11  # Omniglot has 20 per character
  with pytest.raises(
    ValueError,
    match="shots \\+ queries = 21 but the "
    "smallest class of this split has only 20 examples",
  ):
    runs.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


CONFIG_FILES = sorted(
  p.stem
  for p in (REPO / "experiments" / "configs").glob("*.py")
  if not p.name.startswith("_")
)


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_lists_its_variants_on_a_bad_one(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  module.get_config("smoke")  # exists for every config
  with pytest.raises(
    ValueError, match=r"(?i)unknown variant 'k7w3s'.*valid.*smoke"
  ):
    module.get_config("k7w3s")


def run_binary(*args):
  return subprocess.run(
    [sys.executable, "-m", "experiments.train", "--noprogress", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )


@pytest.mark.parametrize(
  "args,expected",
  [
    (
      [
        "--config=experiments/configs/maml_sinusoid.py:smoke",
        "--config.shots=0",
      ],
      "Invalid config: config.shots must be an integer >= 1, got 0.",
    ),
    (
      ["--config=experiments/configs/mamll_sinusoid.py:smoke"],
      "--config=experiments/configs/mamll_sinusoid.py:smoke: no such file. "
      "Valid configs (add ':variant'): experiments/configs/anil_omniglot.py,",
    ),
    (
      [
        "--config=experiments/configs/maml_sinusoid.py:smoke",
        "--config.inner_lrr=0.1",
      ],
      "the config has no field 'inner_lrr' (did you mean 'inner_lr'?); its "
      "fields: augment, augment_pad,",
    ),
    (
      [
        "--config=experiments/configs/maml_sinusoid.py:smoke",
        "--config.learner_kwargs.inner_lrr=0.1",
      ],
      "config.learner_kwargs has no field 'inner_lrr' (did you mean "
      "'inner_lr'?); its fields: ",
    ),
    (
      ["--config=experiments/configs/maml_sinusoid.py:k7"],
      "--config=experiments/configs/maml_sinusoid.py:k7: Unknown variant 'k7' "
      "of maml_sinusoid; valid: '', 'smoke'",
    ),
  ],
  ids=[
    "invalid_value",
    "unknown_config_file",
    "unknown_field",
    "unknown_nested_field",
    "unknown_variant",
  ],
)
def test_binary_bad_input_is_one_line_without_writing(tmp_path, args, expected):
  proc = run_binary(*args, f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert expected in proc.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "w").exists()
