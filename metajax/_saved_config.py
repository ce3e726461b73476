"""A run's saved config: `<workdir>/config.json` read back and compared.

`metajax.runs` writes a run's config there before it trains; reading it
refuses a damaged file and one of the format before the declarative configs
(with the command that converts it), and a run resumed in the same workdir
must have the same config but for the fields in `RESUMABLE`.
"""

import json
import os
from typing import Any, Dict, Optional

from flax import traverse_util

from metajax import from_config

# Fields a resumed run may change: how long, how often, where, on what devices.
RESUMABLE = {
  "num_steps",
  "eval_episodes",
  "val_every",
  "val_episodes",
  "checkpoint_every",
  "log_every",
  "data_dir",
  "paper_result",
  "on_nonfinite",
  "num_devices",
  "tasks_per_chunk",
}
CONVERT_COMMAND = "python -m experiments.convert_config --workdir={workdir}"


def config_dict(config) -> Dict[str, Any]:
  """`config` (a ConfigDict or a dict) as plain JSON values: what
  config.json and results.json hold."""
  return (
    json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)
  )


def read_config_json(workdir) -> Optional[Dict[str, Any]]:
  """`<workdir>/config.json` as a dict; None if absent; `ConfigError` if
  broken or in the format of runs written before the declarative configs."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    saved = json.loads(text)
  except ValueError as e:
    raise from_config.ConfigError(
      f"{path} is not valid JSON ({e}); it was edited or damaged. Restore "
      "it from your config, or use a new --workdir."
    ) from None
  if not isinstance(saved, dict):
    raise from_config.ConfigError(
      f"{path} holds a {type(saved).__name__}, not a config."
    )
  if "learner_kwargs" not in saved:
    raise from_config.ConfigError(
      f"{path} is in the format of runs written before the declarative "
      "configs (no learner_kwargs). Convert it once with: "
      f"{CONVERT_COMMAND.format(workdir=workdir)}"
    )
  return saved


def check_same_config(workdir, config) -> None:
  """Raises ValueError if `workdir` holds a run of another config."""
  saved = read_config_json(workdir)
  if saved is None:
    return
  old = traverse_util.flatten_dict(
    config_dict(from_config.with_option_defaults(saved)), sep="."
  )
  new = traverse_util.flatten_dict(
    config_dict(from_config.with_option_defaults(config)), sep="."
  )
  diff = sorted(
    k
    for k in set(old) | set(new)
    if k not in RESUMABLE and old.get(k) != new.get(k)
  )
  if diff:
    raise from_config.ConfigError(
      f"{workdir!r} holds a run with a different config (fields "
      f"{', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diff)}); "
      "use a new --workdir or the same config to resume."
    )
  if new.get("outer_lr_schedule") == "linear_decay" and old.get(
    "num_steps"
  ) != new.get("num_steps"):
    raise from_config.ConfigError(
      f"{workdir!r} holds a run of num_steps={old.get('num_steps')} with "
      "outer_lr_schedule='linear_decay', whose learning rate reaches 0 at "
      "num_steps: resuming it with num_steps="
      f"{new.get('num_steps')} would make the rate jump. Resume with "
      f"num_steps={old.get('num_steps')} or use a new --workdir."
    )
