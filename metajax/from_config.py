"""From a declarative config to a model, learner, task sources and optimizer.

A config (an `ml_collections.ConfigDict`, see `default_config` and
experiments/configs/) says what to build::

  learner, learner_kwargs       a factory of `metajax.learners.FACTORIES` and
                                its keyword options (unset: its defaults)
  test_learner_kwargs           options that differ at validation and test
                                time (None: as in training)
  model, model_kwargs           "conv4", "resnet12" or "mlp" and the
                                module's options
  dataset, data_kwargs, ...     the data (data_kwargs go to its loader)

and the run's shared fields (episode sizes, meta-batch, outer optimizer,
validation, checkpoints). Each factory checks its own options and holds its
own defaults; this module checks only what needs the whole config (fields
of the run itself, the meta-batch against the devices, the learner against
the dataset, the test-time learner against the training one), and passes
the factory what its signature names of: `ways`, `shots` (their test_*
values for the test-time learner), `num_classes` (the training split's
classes) and `task` ("regression" on the sinusoid family). A factory whose
first parameter is `embedding` gets the model without a head; one whose
first parameter is `model` gets a head of `ways` outputs (1 for regression).

`metajax.runs` trains, evaluates and saves a run from these pieces.
"""

import difflib
import inspect
from typing import Any, Dict, Optional

import jax
import ml_collections
import optax

from metajax import _config_checks as config_checks
from metajax import learners
from metajax._config_checks import KWARGS_FIELDS, MODELS, OUTER_OPTS
from metajax._config_checks import SCHEDULES as SCHEDULES
from metajax.checks import ConfigError
from metajax.data import from_config as data_lib
from metajax.data.from_config import DATASETS as DATASETS
from metajax.data.from_config import example_episode
from metajax.data.from_config import input_shape
from metajax.data.from_config import test_value
from metajax.data.sources import DATA_DIR_ENV as DATA_DIR_ENV
from metajax.types import Learner

placeholder = ml_collections.config_dict.placeholder


def default_config() -> ml_collections.ConfigDict:
  """Every field a config has, with its default (experiments/configs/_base.py)."""
  c = ml_collections.ConfigDict()
  c.learner = "maml"
  for field in KWARGS_FIELDS:
    c[field] = ml_collections.ConfigDict()
  c.model = "conv4"
  c.dataset = "omniglot"
  c.data_dir = ""  # "": $METAJAX_DATA_DIR, else download (docs/datasets.md)
  c.image_size = placeholder(int)  # None: the dataset's own
  c.augment = False  # random crops and flips of the training images
  c.augment_pad = placeholder(int)  # None: 4 pixels at 32x32, 8 at 84x84
  c.warp = False  # random affine warps of the training images (warp_kwargs)
  # Each test (training) episode's classes from one group (Omniglot: one
  # alphabet).
  c.test_within_groups = False
  c.train_within_groups = False
  # Classes of the training split, for learners that pre-train a head over
  # all of them (None: counted from the data when the run starts).
  c.num_classes = placeholder(int)
  c.batch_size = placeholder(int)  # images per step of class-batch learners
  c.ways, c.shots, c.queries = 5, 1, 15
  c.test_ways = placeholder(int)  # test_*: None is the training value
  c.test_shots = placeholder(int)
  c.test_queries = placeholder(int)
  c.meta_batch_size = 32
  c.num_steps = 1_000
  c.outer_opt = "adam"  # or "sgd"
  c.outer_lr = 1e-3
  c.outer_lr_schedule = "constant"  # or "linear_decay" (to 0 at num_steps)
  c.outer_grad_clip = placeholder(float)  # clip the meta-gradient's norm
  c.seed = 0
  c.on_nonfinite = "raise"  # or "skip": drop non-finite steps
  # A finished run whose meta-parameters' "embed" initializes this run's
  # embedding (the same network), e.g. a ProtoNet run for SNAIL; "": none.
  c.embedding_init = ""
  # True: the embedding's meta-parameters stay as initialized.
  c.freeze_embedding = False
  c.num_devices = placeholder(int)  # devices the tasks are sharded over
  # Tasks each device adapts at once (None: 1 on CPU, all on GPU/TPU).
  c.tasks_per_chunk = placeholder(int)
  c.val_every = 500  # 0: never
  c.val_episodes = 100
  # Evaluate (and load_run) the meta-parameters of the best validation.
  c.select_on_validation = False
  c.eval_episodes = 600
  c.checkpoint_every = 500
  c.log_every = 100
  c.paper_result = ""  # printed beside the result
  # Short names of learner options that command lines set (None: unset);
  # each overrides its option (`SHORTCUTS`). Configs link them to
  # learner_kwargs (experiments/configs/_base.py), so the two agree.
  for name in SHORTCUTS:
    c[name] = placeholder(float if name == "inner_lr" else int)
  return c


# Short name -> (test-time?, option of learner_kwargs / test_learner_kwargs).
SHORTCUTS = {
  "inner_lr": (False, "inner_lr"),
  "inner_steps": (False, "inner_steps"),
  "test_inner_steps": (True, "inner_steps"),
  "inner_batch_size": (False, "inner_batch_size"),
  "test_inner_batch_size": (True, "inner_batch_size"),
}


def complete(config) -> ml_collections.ConfigDict:
  """`config` over `default_config()`: fields it lacks get their default.

  A run's config.json written before a field existed loads with that
  field's default. Raises `ConfigError` for a field no config has.
  """
  values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  full = default_config().to_dict()
  unknown = sorted(set(values) - set(full))
  if unknown:
    close = difflib.get_close_matches(unknown[0], list(full), n=1)
    raise ConfigError(
      f"config.{unknown[0]} is not a field of a metajax config"
      + (f" (did you mean {close[0]!r}?)" if close else "")
      + "; a learner's options go in config.learner_kwargs."
    )
  full.update(values)
  return ml_collections.ConfigDict(full)


def _defaults(fn) -> Dict[str, Any]:
  """The keyword defaults of a factory, or of a flax module's fields."""
  return {
    k: p.default
    for k, p in inspect.signature(fn).parameters.items()
    if p.default is not inspect.Parameter.empty
  }


def with_option_defaults(config) -> ml_collections.ConfigDict:
  """`complete(config)` whose learner_kwargs and model_kwargs also hold the
  defaults of the options they leave out (the factory's and the module's):
  two configs that build the same learner compare equal."""
  config = complete(config)
  if config.learner in learners.FACTORIES:
    options = _defaults(learners.FACTORIES[config.learner])
    options.update(config.learner_kwargs.to_dict())
    config.learner_kwargs = ml_collections.ConfigDict(_plain(options))
  if config.model in MODELS:
    options = _defaults(MODELS[config.model])
    options.pop("parent", None), options.pop("name", None)
    options.update(config.model_kwargs.to_dict())
    config.model_kwargs = ml_collections.ConfigDict(_plain(options))
  return config


def validate(config) -> ml_collections.ConfigDict:
  """Raises `ConfigError` naming the first bad field, before any heavy work.

  Checks the run's fields, builds the learner and the test-time learner
  (each factory checks its own options) and compares their meta-parameters'
  shapes (abstractly: nothing is computed).

  Returns:
    The config completed with the defaults of fields it lacks.
  """
  config = complete(config)
  config_checks.check_fields(config)
  config_checks.check_run(config)
  # Before the data is read, 2 classes stand in for an unset num_classes.
  stand_in = 2 if config.num_classes is None else None
  learner = build_learner(config, num_classes=stand_in)
  test_learner = build_learner(config, test=True, num_classes=stand_in)
  try:
    shapes = _meta_param_shapes(learner, config)
    test_shapes = _meta_param_shapes(test_learner, config)
  except ValueError as e:  # e.g. images too small for the network
    raise ConfigError(
      f"config.model={config.model!r} on the inputs of "
      f"{config.dataset!r} ({input_shape(config)}): {e}"
    ) from None
  if test_shapes != shapes:
    changed = [
      f"{name}={config[name]}"
      for name in ("test_ways", "test_shots")
      if config[name] is not None
    ] + [
      f"test_learner_kwargs.{k}={v}"
      for k, v in config.test_learner_kwargs.items()
      if v is not None
    ]
    raise ConfigError(
      f"config.learner={config.learner!r}: its meta-parameters at test "
      f"time ({', '.join(changed)}) would differ from the trained ones; "
      "leave those test_* fields unset (None) for this learner."
    )
  for field in ("embedding_init", "freeze_embedding"):
    if config[field] and not (isinstance(shapes, dict) and "embed" in shapes):
      raise ConfigError(
        f"config.{field} is for learners with an embedding (meta-"
        f"parameters 'embed'); {config.learner!r} has none."
      )
  return config


def _meta_param_shapes(learner: Learner, config):
  example = jax.tree.map(lambda a: a[0], example_episode(config))
  return jax.tree.map(
    lambda a: (a.shape, str(a.dtype)),
    jax.eval_shape(learner.init, jax.random.key(0), example),
  )


def val_seed(config) -> int:
  """The seed of a run's validation episodes (`meta_train` uses seed + 1)."""
  return config.seed + 1


def test_seed(config) -> int:
  """The seed of a run's test episodes (distinct from its training seed)."""
  return config.seed + 2


def _plain(value):
  """A ConfigDict's value as factories take it: dicts, tuples for lists."""
  if isinstance(value, (dict, ml_collections.ConfigDict)):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return tuple(_plain(v) for v in value)
  return value


def learner_options(config, *, test: bool = False) -> Dict[str, Any]:
  """The options the learner's factory gets from `config`: learner_kwargs
  with the short names (`SHORTCUTS`) set, and with `test=True` those of
  test time over them (test_learner_kwargs and the test_* short names)."""
  options = _plain(config.learner_kwargs)
  for at_test in (False, True) if test else (False,):
    if at_test:
      options.update(
        {
          k: v
          for k, v in _plain(config.test_learner_kwargs).items()
          if v is not None
        }
      )
    for name, (test_time, option) in SHORTCUTS.items():
      if test_time == at_test and config.get(name) is not None:
        options[option] = config[name]
  return options


def build_model(config, num_outputs: Optional[int]):
  """The config's network; `num_outputs=None` gives an embedding."""
  try:
    return MODELS[config.model](num_outputs, **_plain(config.model_kwargs))
  except (TypeError, ValueError) as e:
    raise ConfigError(
      f"config.model={config.model!r} with config.model_kwargs: {e}"
    ) from None


def build_learner(
  config, *, test: bool = False, num_classes: Optional[int] = None
) -> Learner:
  """The config's learner.

  Args:
    config: a config.
    test: build the validation and test-time learner (test_* sizes and
      test_learner_kwargs).
    num_classes: stands in for `config.num_classes` when that is None (for
      checks made before the data is read).
  """
  name = config.learner
  factory = learners.FACTORIES[name]
  params = inspect.signature(factory).parameters
  regression = config.dataset == "sinusoid"
  if regression and "task" not in params:
    raise ConfigError(
      f"config.learner={name!r} is a classifier; it needs a "
      "classification dataset, not 'sinusoid'."
    )
  ways = test_value(config, "ways") if test else config.ways
  context = {
    "ways": ways,
    "shots": test_value(config, "shots") if test else config.shots,
    "num_classes": (
      num_classes if config.num_classes is None else config.num_classes
    ),
    "task": "regression" if regression else "classification",
  }
  kwargs = {k: v for k, v in context.items() if k in params}
  if "num_classes" in kwargs and kwargs["num_classes"] is None:
    raise ConfigError(
      f"config.num_classes is unset: {name} pre-trains a head over every "
      "meta-train class; runs.train_and_evaluate fills it in from the data."
    )
  kwargs.update(learner_options(config, test=test))
  head = (
    None if next(iter(params)) == "embedding" else (1 if regression else ways)
  )
  model = build_model(config, head)
  try:
    learner = factory(model, **kwargs)
  except TypeError as e:
    if "keyword argument" not in str(e):
      raise
    kinds = {p: v.kind for p, v in params.items()}
    options = sorted(p for p, k in kinds.items() if k == k.KEYWORD_ONLY)
    more = (
      " and those it passes on"
      if inspect.Parameter.VAR_KEYWORD in kinds.values()
      else ""
    )
    raise ConfigError(
      f"config.learner_kwargs of {name!r}: {e} (its options: "
      f"{', '.join(options)}{more})."
    ) from None
  except ValueError as e:
    raise ConfigError(f"config.learner={name!r}: {e}") from None
  if config.freeze_embedding:
    learner = learners.freeze_embedding(learner)
  return learner


def build_outer_opt(config) -> optax.GradientTransformation:
  """`config.outer_opt` at `config.outer_lr` (constant, or decayed linearly
  to 0 over num_steps), after clipping the meta-gradient's global norm to
  `config.outer_grad_clip` if set. The step programs apply the learner's
  `wrap_outer_opt` (`step.outer_optimizer`)."""
  lr = config.outer_lr
  if config.outer_lr_schedule == "linear_decay":
    lr = optax.linear_schedule(config.outer_lr, 0.0, max(config.num_steps, 1))
  opt = OUTER_OPTS[config.outer_opt](lr)
  if config.outer_grad_clip:
    opt = optax.chain(optax.clip_by_global_norm(config.outer_grad_clip), opt)
  return opt


def build_sources(config) -> Dict[str, Any]:
  """Task sources "train", "val" and "test" of the config's data, the
  training one what its learner trains on (`metajax.data.from_config`)."""
  return data_lib.sources(config, build_learner(config, num_classes=2).train_on)
