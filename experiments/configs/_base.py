"""Helpers of the config files; the fields themselves are declared once, in
`metajax.from_config.default_config` (what each one means is there and in
docs/configs.md).

A config says what to build: `learner` (a factory of
`metajax.learners.FACTORIES`) with `learner_kwargs` (its options; unset ones
keep the factory's defaults) and `test_learner_kwargs` (options that differ
at validation and test time), `model` with `model_kwargs`, `dataset` with
`data_kwargs`, and the run's shared fields.

Options users name on the command line keep short names: a config links
`inner_lr`, `inner_steps` and `test_inner_steps` to the learner's options
with `link`, so `--config.inner_lr=0.1` sets `learner_kwargs.inner_lr`.
"""

import ml_collections

from metajax import from_config

placeholder = ml_collections.config_dict.placeholder


def get_config() -> ml_collections.ConfigDict:
  """Every field, with its default."""
  return from_config.default_config()


def link(
  c: ml_collections.ConfigDict,
  name: str,
  value,
  *,
  option: str = "",
  test: bool = False,
) -> None:
  """Declares `c.<name> = value` and passes it to the learner.

  As `learner_kwargs.<option>` (default: the same name), or with `test=True`
  as `test_learner_kwargs.<option>`; the two stay one value, so a command
  line's `--config.<name>=...` sets both.
  """
  c[name] = value
  kwargs = c.test_learner_kwargs if test else c.learner_kwargs
  kwargs[option or name] = c.get_ref(name)


def smoke(c: ml_collections.ConfigDict) -> None:
  """The sizes of a `:smoke` variant's run: a few steps, seconds on a CPU."""
  c.meta_batch_size = 2
  c.queries = 2
  c.num_steps = 4
  c.eval_episodes = 6
  c.val_every = 2
  c.val_episodes = 2
  c.checkpoint_every = 2
  c.log_every = 1
