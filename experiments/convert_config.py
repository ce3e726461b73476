r"""Converts a run written before the declarative configs, so it loads again.

  python -m experiments.convert_config --workdir=/tmp/old_run

Runs of metajax before `learner_kwargs` kept every option flat in
`<workdir>/config.json` (`inner_lr`, `filters`, `lstm_hidden`, ...).
`metajax.load_run` and a resumed `experiments.train` refuse such a run with
a message naming this command. It rewrites `config.json` in the current
format (each learner's options in `learner_kwargs`, the network's in
`model_kwargs`, Omniglot's split in `data_kwargs`) and keeps the original
beside it as `config.legacy.json`; the checkpoints are unchanged, and the
converted config builds the same learner, so they restore as before.
"""

import sys

from absl import app
from absl import flags

from experiments import legacy_configs

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required.")
  try:
    legacy_configs.convert_workdir(_WORKDIR.value)
  except (OSError, ValueError) as e:
    sys.exit(f"convert_config: {e}")
  print(
    f"Converted {_WORKDIR.value}/config.json (the original is "
    f"{legacy_configs.LEGACY_FILE} beside it)."
  )


if __name__ == "__main__":
  app.run(main)
