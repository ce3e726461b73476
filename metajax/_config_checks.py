"""Checks of a config's own fields, and the names its choice fields take.

`metajax.from_config.validate` runs these first: the run's fields (not the
learner's, model's or data's options, which their factories check), each
against its kind and range, then the ones that need each other or the
machine (validation, devices, the meta-batch, folders that must exist).
"""

import os

import ml_collections
import optax

from metajax import checks
from metajax import learners
from metajax import models
from metajax import parallel
from metajax.checks import ConfigError
from metajax.data.from_config import DATASETS
from metajax.data.sources import DATA_DIR_ENV

MODELS = {
  "conv4": models.Conv4,
  "mlp": models.MLP,
  "resnet12": models.ResNet12,
}
OUTER_OPTS = {"adam": optax.adam, "sgd": optax.sgd}
SCHEDULES = ("constant", "linear_decay")
KWARGS_FIELDS = (
  "learner_kwargs",
  "test_learner_kwargs",
  "model_kwargs",
  "data_kwargs",
  "warp_kwargs",
)


def _need(config, name, check, *args, **kwargs):
  try:
    return check(f"config.{name}", config[name], *args, **kwargs)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def check_fields(config) -> None:
  """The run's own fields (not the learner's, model's or data's options)."""
  _need(config, "learner", checks.one_of, learners.FACTORIES)
  _need(config, "model", checks.one_of, MODELS)
  _need(config, "dataset", checks.one_of, DATASETS)
  minimum = {
    "ways": 1 if config.dataset == "sinusoid" else 2,
    "shots": 1,
    "queries": 1,
    "meta_batch_size": 1,
    "num_steps": 0,
    "eval_episodes": 1,
    "seed": 0,
    "checkpoint_every": 1,
    "log_every": 1,
    "val_every": 0,
    "val_episodes": 1,
  }
  for name, low in minimum.items():
    _need(config, name, checks.integer, minimum=low)
    if name in ("ways", "shots", "queries"):
      _need(config, "test_" + name, checks.integer, minimum=low, optional=True)
  for name, low in (
    ("num_devices", 1),
    ("tasks_per_chunk", 1),
    ("num_classes", 2),
    ("batch_size", 1),
    ("image_size", 1),
    ("augment_pad", 0),
  ):
    _need(config, name, checks.integer, minimum=low, optional=True)
  _need(config, "outer_lr", checks.positive)
  _need(config, "outer_grad_clip", checks.positive, optional=True)
  _need(config, "outer_opt", checks.one_of, OUTER_OPTS)
  _need(config, "outer_lr_schedule", checks.one_of, SCHEDULES)
  _need(config, "on_nonfinite", checks.one_of, ("raise", "skip"))
  for name in (
    "augment",
    "warp",
    "test_within_groups",
    "train_within_groups",
    "freeze_embedding",
    "select_on_validation",
  ):
    _need(config, name, checks.boolean)
  for name in ("embedding_init", "data_dir", "paper_result"):
    if not isinstance(config[name], str):
      raise ConfigError(
        f"config.{name} must be a string, got {config[name]!r}."
      )
  for name in KWARGS_FIELDS:
    if not isinstance(config[name], (dict, ml_collections.ConfigDict)):
      raise ConfigError(
        f"config.{name} must be a dict of options, got {config[name]!r}."
      )


def check_run(config) -> None:
  """Cross-field checks of the run: validation, devices, data folders."""
  if config.select_on_validation and not config.val_every:
    raise ConfigError(
      "config.select_on_validation=True needs validation: set "
      "config.val_every > 0 (and config.val_episodes)."
    )
  try:
    mesh = parallel.task_mesh(config.num_devices)
  except ValueError as e:
    raise ConfigError(f"config.num_devices: {e}") from None
  try:
    parallel.check_meta_batch_size(config.meta_batch_size, mesh)
  except ValueError as e:
    raise ConfigError(f"config.meta_batch_size: {e}") from None
  chunk, per_device = (
    config.tasks_per_chunk,
    (config.meta_batch_size // mesh.devices.size),
  )
  if chunk is not None and per_device % chunk:
    raise ConfigError(
      f"config.tasks_per_chunk={chunk} must divide the {per_device} tasks "
      f"per device (meta_batch_size {config.meta_batch_size} over "
      f"{mesh.devices.size} devices)."
    )
  source = config.embedding_init
  if source and not os.path.isfile(os.path.join(source, "config.json")):
    raise ConfigError(
      f"config.embedding_init={source!r} holds no run (no config.json)."
    )
  data_dir = config.data_dir or (
    os.environ.get(DATA_DIR_ENV) or "" if config.dataset == "omniglot" else ""
  )
  if data_dir and not os.path.isdir(data_dir):
    origin = "config.data_dir" if config.data_dir else DATA_DIR_ENV
    raise ConfigError(
      f"The {config.dataset} data folder {data_dir!r} (from {origin}) does "
      "not exist. Name a folder holding its files (docs/datasets.md), or "
      "unset it to download through tensorflow-datasets."
    )
