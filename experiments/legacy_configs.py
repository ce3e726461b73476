"""The format of config.json before the declarative configs, and its conversion.

Runs of metajax before `learner_kwargs` kept every option flat in
`<workdir>/config.json` (`inner_lr`, `filters`, `lstm_hidden`, ...). `convert`
maps such a config to the current format: each learner's options in
`learner_kwargs` (with the defaults those runs had for options added later),
the network's in `model_kwargs`, Omniglot's split in `data_kwargs`. The
binary `experiments.convert_config` applies it to a workdir.
"""

import json
import os
from typing import Any, Dict

from metajax import metrics_io

LEGACY_FILE = "config.legacy.json"

# Learner names that changed (the config name is now the factory's name).
_NAMES = {"meta_lstm": "meta_learner_lstm"}
# Each learner's options: (legacy field, option, default of a run written
# before the field existed).
_MAML = (
  ("inner_lr", "inner_lr", None),
  ("inner_steps", "inner_steps", None),
  ("first_order", "first_order", False),
  ("remat", "remat", False),
  ("lslr", "lslr", False),
  ("multi_step_loss", "multi_step_loss", False),
  ("first_order_steps", "first_order_steps", 0),
)
_BASELINE = (
  ("finetune_steps", "finetune_steps", None),
  ("finetune_lr", "finetune_lr", None),
  ("finetune_weight_decay", "finetune_weight_decay", 1e-3),
  ("normalize_features", "normalize_features", False),
  ("transductive_steps", "transductive_steps", 0),
  ("transductive_lr", "transductive_lr", 5e-5),
  ("entropy_weight", "entropy_weight", 1.0),
)
_OPTIONS = {
  "maml": _MAML,
  "anil": _MAML,
  "meta_sgd": _MAML,
  "fomaml": tuple(
    o for o in _MAML if o[0] not in ("first_order", "first_order_steps")
  ),
  "reptile": (
    ("inner_lr", "inner_lr", None),
    ("inner_steps", "inner_steps", None),
    ("carry_inner_state", "carry_inner_state", False),
    ("inner_batch_size", "inner_batch_size", None),
  ),
  "meta_learner_lstm": (
    ("inner_steps", "inner_steps", None),
    ("first_order", "first_order", True),
    ("remat", "remat", False),
    ("lstm_hidden", "hidden", 20),
    ("lstm_input_bias", "input_bias", (-5.0, -4.0)),
  ),
  "protonet": (("distance", "distance", "euclidean"), ("scale", "scale", 10.0)),
  "matching_net": (
    ("fce", "fce", False),
    ("read_steps", "read_steps", 5),
    ("scale", "scale", 1.0),
  ),
  "baseline": _BASELINE,
  "baseline_pp": _BASELINE,
  "mann": (
    ("memory_slots", "memory_slots", 128),
    ("memory_size", "memory_size", 40),
    ("controller_size", "controller_size", 200),
    ("read_heads", "read_heads", 4),
    ("gamma", "gamma", 0.95),
    ("online_loss", "online_loss", False),
    # Runs from before these two fields had neither (the paper's
    # equations as written).
    ("add_vectors", "add_vectors", False),
    ("key_strength", "key_strength", False),
  ),
  "snail": (
    ("attention", "attention", ((64, 32), (256, 128), (512, 256))),
    ("tc_filters", "tc_filters", 128),
  ),
}
_MODEL = {
  "conv4": (
    ("filters", 64),
    ("pooling", "stride"),
    ("norm", True),
    ("conv_impl", "patches"),
    ("compute_dtype", "float32"),
  ),
  "mlp": (("hidden", (40, 40)),),
}
# Omniglot's loader options: (legacy field, option, default).
_OMNIGLOT = (
  ("split", "split", "seeded"),
  ("split_seed", "seed", 0),
  ("num_train", "num_train", None),
  ("num_val", "num_val", None),
  ("rotations", "rotations", True),
)
# Shared fields kept as they are (absent: the default of such a run).
_SHARED = {
  "dataset": None,
  "data_dir": "",
  "image_size": None,
  "augment": False,
  "augment_pad": None,
  "num_classes": None,
  "batch_size": None,
  "ways": None,
  "test_ways": None,
  "shots": None,
  "test_shots": None,
  "queries": None,
  "test_queries": None,
  "meta_batch_size": None,
  "num_steps": None,
  "outer_opt": "adam",
  "outer_lr": None,
  "outer_lr_schedule": "constant",
  "outer_grad_clip": None,
  "seed": 0,
  "on_nonfinite": "raise",
  "embedding_init": "",
  "freeze_embedding": False,
  "num_devices": None,
  "tasks_per_chunk": None,
  "val_every": 0,
  "val_episodes": 100,
  "select_on_validation": False,
  "eval_episodes": 600,
  "checkpoint_every": 1000,
  "log_every": 100,
  "paper_result": "",
}


# Top-level name -> (option, where): the options a config links to a field
# of its own (configs/_base.link).
_LINKED = {
  "inner_lr": ("inner_lr", lambda c: c["learner_kwargs"]),
  "inner_steps": ("inner_steps", lambda c: c["learner_kwargs"]),
  "test_inner_steps": ("inner_steps", lambda c: c["test_learner_kwargs"]),
  "inner_batch_size": ("inner_batch_size", lambda c: c["learner_kwargs"]),
  "test_inner_batch_size": (
    "inner_batch_size",
    lambda c: c["test_learner_kwargs"],
  ),
}


def is_legacy(config: Dict[str, Any]) -> bool:
  """True for a config.json of the flat format (no learner_kwargs)."""
  return "learner_kwargs" not in config


def convert(old: Dict[str, Any]) -> Dict[str, Any]:
  """A legacy (flat) config dict in the current format."""
  name = _NAMES.get(old["learner"], old["learner"])
  if name not in _OPTIONS:
    raise ValueError(
      f"config.learner={old['learner']!r} is not a learner of "
      f"the legacy format; known: {sorted(_OPTIONS)}."
    )
  new = {k: old.get(k, default) for k, default in _SHARED.items()}
  new["learner"] = name
  kwargs = {
    option: old.get(field, default) for field, option, default in _OPTIONS[name]
  }
  test_kwargs = {}
  if "inner_steps" in kwargs:
    test_kwargs["inner_steps"] = old.get("test_inner_steps")
    if "lslr" in kwargs:
      kwargs["lslr_steps"] = kwargs["inner_steps"]
  if name == "reptile":
    test_kwargs["inner_batch_size"] = old.get("test_inner_batch_size")
  for key in ("attention", "input_bias"):
    if key in kwargs:
      kwargs[key] = json.loads(json.dumps(kwargs[key]))  # tuples as lists
  new["learner_kwargs"], new["test_learner_kwargs"] = kwargs, test_kwargs
  # The short names the configs link to these options (configs/_base.link).
  for name, (option, kwargs_of) in _LINKED.items():
    new[name] = kwargs_of(new).get(option)
  model = old.get("model", "conv4")
  new["model"] = model
  new["model_kwargs"] = {k: old.get(k, default) for k, default in _MODEL[model]}
  if "hidden" in new["model_kwargs"]:
    new["model_kwargs"]["hidden"] = list(new["model_kwargs"]["hidden"])
  new["data_kwargs"] = (
    {option: old.get(field, default) for field, option, default in _OMNIGLOT}
    if old.get("dataset") == "omniglot"
    else {}
  )
  return new


def convert_workdir(workdir: str) -> Dict[str, Any]:
  """Rewrites `<workdir>/config.json` in the current format; returns it."""
  path = os.path.join(workdir, "config.json")
  with open(path, encoding="utf-8") as f:
    old = json.load(f)
  if not is_legacy(old):
    raise ValueError(f"{path} is already in the current format.")
  new = convert(old)
  metrics_io.write_json(os.path.join(workdir, LEGACY_FILE), old)
  metrics_io.write_json(path, new)
  return new
