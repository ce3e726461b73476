"""From a config to a trained, evaluated, saved run, and back.

A config is an `ml_collections.ConfigDict` (see experiments/configs/). This
module turns one into learners and task sources, runs `train.train` and
`evaluate.evaluate`, writes `<workdir>/config.json` and `results.json`, and
loads a finished run so it can be applied to a user's own episodes.
"""

import json
import math
import os
from typing import Any, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metajax import checkpoint as ckpt_lib
from metajax import evaluate as eval_lib
from metajax import metrics_io
from metajax import parallel
from metajax import train as train_lib
from metajax.data import episodes as episodes_lib
from metajax.data.sinusoid import SinusoidSampler
from metajax.inner.learned_sgd import learned_sgd
from metajax.learners.baseline import baseline
from metajax.learners.maml import anil, maml, meta_sgd, per_layer_per_step_rates
from metajax.learners.protonet import protonet
from metajax.learners.reptile import carry_outer_opt, reptile
from metajax.types import Episode, Learner, Params

GRADIENT_LEARNERS = ("maml", "fomaml", "meta_sgd", "anil", "reptile",
                     "meta_lstm")
METRIC_LEARNERS = ("protonet", "matching_net")
PRETRAINED_LEARNERS = ("baseline", "baseline_pp")
SEQUENCE_LEARNERS = ("mann", "snail")  # black-box: the episode as a sequence
# Learners with an embedding ("embed" meta-parameters): embedding_init.
EMBEDDING_LEARNERS = METRIC_LEARNERS + PRETRAINED_LEARNERS + SEQUENCE_LEARNERS
LEARNERS = (GRADIENT_LEARNERS + METRIC_LEARNERS + PRETRAINED_LEARNERS
            + SEQUENCE_LEARNERS)
# The image datasets and their images' own side (the default of
# config.image_size; any other size resizes them).
IMAGE_DATASETS = {"omniglot": 28, "cifar_fs": 32, "fc100": 32,
                  "mini_imagenet": 84, "tiered_imagenet": 84}
DATASETS = ("sinusoid",) + tuple(IMAGE_DATASETS)
MODELS = ("mlp", "conv4")
DATA_DIR_ENV = "METAJAX_DATA_DIR"


def _get(config, name, default=None):
  return config.get(name, default) if hasattr(config, "get") else default


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field, before any heavy work.

  Checks every field the run uses (sizes, steps, rates, names, the model's
  options), and that the meta-batch splits evenly over the devices
  (`num_devices`, default all) and over `tasks_per_chunk`.
  """

  def need(name, ok, allowed, default=None):
    value = _get(config, name, default)
    if not ok(value):
      raise ValueError(f"config.{name}={value!r} is invalid: {allowed}.")

  is_int = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)
  is_rate = lambda v: (isinstance(v, (int, float, np.floating))
                       and not isinstance(v, bool) and math.isfinite(v) and v > 0)
  need("learner", lambda v: v in LEARNERS, f"valid learners are {list(LEARNERS)}")
  need("dataset", lambda v: v in DATASETS, f"valid datasets are {list(DATASETS)}")
  need("model", lambda v: v in MODELS, f"valid models are {list(MODELS)}")
  gradient = config.learner in GRADIENT_LEARNERS
  if not gradient and config.dataset == "sinusoid":
    raise ValueError(f"config.learner={config.learner!r} is a classifier; "
                     "it needs a classification dataset, not 'sinusoid'.")
  if config.dataset != "sinusoid":
    need("ways", lambda v: is_int(v) and v >= 2, "must be an integer >= 2")
    need("test_ways", lambda v: v is None or (is_int(v) and v >= 2),
         "must be None or an integer >= 2")
  need("shots", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
  need("test_shots", lambda v: v is None or (is_int(v) and v >= 1),
       "must be None or an integer >= 1")
  need("queries", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
  need("test_queries", lambda v: v is None or (is_int(v) and v >= 1),
       "must be None or an integer >= 1")
  need("meta_batch_size", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
  if gradient:
    need("inner_steps", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
    need("test_inner_steps", lambda v: v is None or (is_int(v) and v >= 0),
         "must be None or an integer >= 0")
    if config.learner == "meta_lstm":  # the step sizes are learned gates
      need("lstm_hidden", lambda v: v is None or (is_int(v) and v >= 1),
           "must be None or an integer >= 1")
      need("lstm_input_bias", lambda v: v is None or (
          isinstance(v, (tuple, list)) and len(v) == 2
          and all(isinstance(b, (int, float)) and math.isfinite(b) for b in v)
          and v[0] <= v[1]), "must be None or a range (low, high)")
      if _get(config, "lslr"):
        raise ValueError("config.lslr is for SGD inner loops; the Meta-Learner "
                         "LSTM learns its step sizes (its input gate).")
    else:
      need("inner_lr", is_rate, "must be a finite number > 0")
    need("first_order_steps", lambda v: v is None or (is_int(v) and v >= 0),
         "must be None or an integer >= 0")
    if _get(config, "lslr") and config.inner_steps < 1:
      raise ValueError("config.lslr learns one inner rate per inner step; it "
                       f"needs config.inner_steps >= 1, got {config.inner_steps}.")
    if (_get(config, "first_order_steps") or 0) and (
        config.learner in ("fomaml", "reptile") or _get(config, "first_order")):
      raise ValueError(
          f"config.first_order_steps switches a second-order learner to second "
          f"order after that many steps; {config.learner!r}"
          f"{' with first_order=True' if _get(config, 'first_order') else ''} "
          "is first-order throughout.")
  need("carry_inner_state", lambda v: isinstance(v, bool),
       "must be a bool: True carries Reptile's inner Adam statistics from "
       "task to task (the paper's code)", default=False)
  if _get(config, "carry_inner_state") and config.learner != "reptile":
    raise ValueError(f"config.carry_inner_state is for Reptile's inner Adam; "
                     f"{config.learner!r} has none to carry.")
  for name in ("inner_batch_size", "test_inner_batch_size"):
    need(name, lambda v: v is None or (is_int(v) and v >= 1),
         "must be None (the whole support set) or an integer >= 1")
    if _get(config, name) is not None and config.learner != "reptile":
      raise ValueError(f"config.{name} (mini-batches of the support set in "
                       f"each inner step) is for Reptile, not "
                       f"{config.learner!r}.")
  if config.learner == "protonet":
    need("distance", lambda v: v in (None, "euclidean", "cosine"),
         "must be 'euclidean' or 'cosine'")
  if config.learner in METRIC_LEARNERS:
    need("scale", lambda v: v is None or is_rate(v),
         "must be None or a finite number > 0")
  if config.learner == "matching_net":
    need("read_steps", lambda v: v is None or (is_int(v) and v >= 1),
         "must be None or an integer >= 1")
  if config.learner in PRETRAINED_LEARNERS:
    need("batch_size", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
    need("num_classes", lambda v: v is None or (is_int(v) and v >= 2),
         "must be None (from the data) or an integer >= 2")
    need("finetune_steps", lambda v: is_int(v) and v >= 1,
         "must be an integer >= 1")
    need("finetune_lr", is_rate, "must be a finite number > 0")
    need("transductive_steps", lambda v: v is None or (is_int(v) and v >= 0),
         "must be None or an integer >= 0")
    need("transductive_lr", lambda v: v is None or is_rate(v),
         "must be None or a finite number > 0")
    need("finetune_weight_decay", lambda v: v is None or (
        isinstance(v, (int, float)) and math.isfinite(v) and v >= 0),
         "must be None or a finite number >= 0")
  if config.learner in SEQUENCE_LEARNERS:
    _validate_sequence_learner(config, need, is_int)
  need("outer_lr", is_rate, "must be a finite number > 0")
  need("outer_grad_clip", lambda v: v is None or is_rate(v),
       "must be None or a finite number > 0")
  need("outer_opt", lambda v: v is None or v in OUTER_OPTS,
       f"valid outer optimizers are {list(OUTER_OPTS)}")
  need("outer_lr_schedule", lambda v: v is None or v in SCHEDULES,
       f"valid schedules are {list(SCHEDULES)}")
  need("num_steps", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
  need("eval_episodes", lambda v: is_int(v) and v >= 1, "must be an integer >= 1")
  need("seed", lambda v: is_int(v) and v >= 0, "must be an integer >= 0")
  for name, low, default in (("checkpoint_every", 1, 1000), ("log_every", 1, 100),
                             ("val_every", 0, 0), ("val_episodes", 1, 100)):
    need(name, lambda v, low=low: is_int(v) and v >= low,
         f"must be an integer >= {low}", default=default)
  need("embedding_init", lambda v: isinstance(v, str),
       "must be '' (none) or the workdir of a finished run whose embedding "
       "initializes this one's", default="")
  need("freeze_embedding", lambda v: isinstance(v, bool),
       "must be a bool: True leaves the embedding's meta-parameters as "
       "initialized (by config.embedding_init, typically)", default=False)
  for field in ("embedding_init", "freeze_embedding"):
    if _get(config, field) and config.learner not in EMBEDDING_LEARNERS:
      raise ValueError(
          f"config.{field} is for learners with an embedding "
          f"({', '.join(EMBEDDING_LEARNERS)}); {config.learner!r} has none.")
  source = _get(config, "embedding_init") or ""
  if source and not os.path.isfile(os.path.join(source, "config.json")):
    raise ValueError(f"config.embedding_init={source!r} holds no run (no "
                     "config.json).")
  need("select_on_validation", lambda v: isinstance(v, bool),
       "must be True (evaluate the meta-parameters of the best validation) "
       "or False (the last ones)", default=False)
  if _get(config, "select_on_validation") and not _get(config, "val_every"):
    raise ValueError(
        "config.select_on_validation=True needs validation: set "
        "config.val_every > 0 (and config.val_episodes).")
  need("num_devices", lambda v: v is None or (is_int(v) and v >= 1),
       "must be None (every device) or an integer >= 1")
  need("tasks_per_chunk", lambda v: v is None or (is_int(v) and v >= 1),
       "must be None (automatic) or an integer >= 1")
  mesh = parallel.task_mesh(_get(config, "num_devices"))
  parallel.check_meta_batch_size(config.meta_batch_size, mesh)
  chunk = _get(config, "tasks_per_chunk")
  per_device = config.meta_batch_size // mesh.devices.size
  if chunk is not None and per_device % chunk:
    raise ValueError(
        f"config.tasks_per_chunk={chunk} must divide the {per_device} tasks "
        f"per device (meta_batch_size {config.meta_batch_size} over "
        f"{mesh.devices.size} devices).")
  need("on_nonfinite", lambda v: v in (None, "raise", "skip"),
       "must be 'raise' (stop at the first non-finite loss or gradient) or "
       "'skip' (drop such steps)")
  if config.model == "mlp":
    need("hidden", lambda v: isinstance(v, (tuple, list)) and all(
        is_int(w) and w >= 1 for w in v),
         "must be a tuple of layer widths, integers >= 1", default=(40, 40))
  else:
    from metajax.models import conv4, layers  # pylint: disable=g-import-not-at-top
    need("filters", lambda v: is_int(v) and v >= 1, "must be an integer >= 1",
         default=64)
    need("pooling", lambda v: v in conv4.POOLINGS,
         f"valid poolings are {list(conv4.POOLINGS)}", default="stride")
    need("conv_impl", lambda v: v in layers.CONV_IMPLS,
         f"valid conv_impls are {list(layers.CONV_IMPLS)}", default="patches")
    need("norm", lambda v: isinstance(v, bool), "must be True or False",
         default=True)
    need("compute_dtype", lambda v: v in layers.COMPUTE_DTYPES,
         f"valid compute_dtypes are {list(layers.COMPUTE_DTYPES)}",
         default="float32")
    if (_get(config, "compute_dtype", "float32") != "float32"
        and _get(config, "conv_impl", "patches") != "patches"):
      raise ValueError("config.compute_dtype='bfloat16' needs "
                       "conv_impl='patches'.")
    if _get(config, "pooling", "stride") == "max":
      need("image_size", lambda v: v is None or (is_int(v) and v >= 16),
           "must be >= 16 for four 2x2 max-pools",
           default=IMAGE_DATASETS.get(config.dataset, 28))
  if config.dataset in IMAGE_DATASETS:
    need("image_size", lambda v: v is None or (is_int(v) and v >= 1),
         "must be None (the dataset's own size) or an integer >= 1")
    need("augment", lambda v: isinstance(v, bool), "must be True or False",
         default=False)
    need("augment_pad", lambda v: v is None or (is_int(v) and v >= 0),
         "must be None or an integer >= 0")
  if config.dataset == "omniglot":
    data_dir = _get(config, "data_dir") or os.environ.get(DATA_DIR_ENV)
    if data_dir and not os.path.isdir(data_dir):
      raise ValueError(
          f"The Omniglot data folder {data_dir!r} (from "
          f"{'config.data_dir' if _get(config, 'data_dir') else DATA_DIR_ENV}) "
          "does not exist. Name a folder holding the official zips, or unset "
          "both to download through tensorflow-datasets.")
  elif config.dataset in IMAGE_DATASETS:
    data_dir = _get(config, "data_dir")
    if data_dir and not os.path.isdir(data_dir):
      raise ValueError(
          f"The {config.dataset} data folder {data_dir!r} (from "
          "config.data_dir) does not exist; see the README's Datasets "
          "section for what goes there.")


def _validate_sequence_learner(config, need, is_int):
  """The fields of MANN and SNAIL (see `validate`)."""
  name = config.learner
  need("test_ways", lambda v: v is None or v == config.ways,
       f"must be None or config.ways: {name} has one output per way")
  if name == "snail":
    need("test_shots", lambda v: v is None or v == config.shots,
         "must be None or config.shots: SNAIL's depth is set by the "
         "sequence length ways * shots + 1")
    need("tc_filters", lambda v: is_int(v) and v >= 1,
         "must be an integer >= 1", default=128)
    need("attention", lambda v: isinstance(v, (tuple, list)) and len(v) >= 1
         and all(isinstance(a, (tuple, list)) and len(a) == 2
                 and all(is_int(b) and b >= 1 for b in a) for a in v),
         "must be a non-empty tuple of (key_size, value_size) pairs of "
         "integers >= 1", default=((64, 32), (256, 128), (512, 256)))
  else:
    for field, default in (("memory_slots", 128), ("memory_size", 40),
                           ("controller_size", 200), ("read_heads", 4)):
      need(field, lambda v: is_int(v) and v >= 1, "must be an integer >= 1",
           default=default)
    need("gamma", lambda v: isinstance(v, (int, float)) and not isinstance(
        v, bool) and 0 <= v <= 1, "must be a number in [0, 1]", default=0.95)
    need("online_loss", lambda v: isinstance(v, bool), "must be a bool",
         default=False)
    for field in ("add_vectors", "key_strength"):
      need(field, lambda v: isinstance(v, bool), "must be a bool",
           default=False)


def val_seed(config) -> int:
  """The seed of a run's validation episodes (`meta_train` uses seed + 1)."""
  return config.seed + 1


def test_seed(config) -> int:
  """The seed of a run's test episodes (distinct from its training seed)."""
  return config.seed + 2


def test_value(config, name):
  value = _get(config, "test_" + name)
  return config[name] if value is None else value


def build_model(config, num_outputs: Optional[int]):
  """The config's network; `num_outputs=None` gives an embedding."""
  from metajax import models  # pylint: disable=g-import-not-at-top
  if config.model == "mlp":
    return models.MLP(num_outputs, hidden=tuple(_get(config, "hidden", (40, 40))))
  return models.Conv4(num_outputs, filters=_get(config, "filters", 64),
                      pooling=_get(config, "pooling", "stride"),
                      conv_impl=_get(config, "conv_impl", "patches"),
                      norm=bool(_get(config, "norm", True)),
                      compute_dtype=_get(config, "compute_dtype", "float32"))


def build_learner(config, *, test: bool = False) -> Learner:
  """The learner of `config`; `test=True` uses the test-time inner steps and ways.

  `config.learner` is one of LEARNERS; MAML-family options: `first_order`,
  `first_order_steps` (MAML++: first order for that many steps, then second
  order; applied by `train_and_evaluate`),
  `lslr` (MAML++ per-layer per-step learned rates), `multi_step_loss`
  (MAML++: uniform weights over inner steps), `remat`.
  """
  regression = config.dataset == "sinusoid"
  ways = test_value(config, "ways") if test else _get(config, "ways")
  name = config.learner
  if name in EMBEDDING_LEARNERS:
    learner = (_build_sequence_learner(config, ways) if name in SEQUENCE_LEARNERS
               else _build_embedding_learner(config, ways))
    if _get(config, "freeze_embedding", False):
      learner = freeze_embedding(learner)
    return learner
  model = build_model(config, 1 if regression else ways)
  steps = test_value(config, "inner_steps") if test else config.inner_steps
  task = "regression" if regression else "classification"
  if name == "meta_lstm":
    from metajax.learners.meta_lstm import meta_learner_lstm  # pylint: disable=g-import-not-at-top
    return meta_learner_lstm(
        model, inner_steps=steps, task=task,
        first_order=bool(_get(config, "first_order", True)),
        hidden=_get(config, "lstm_hidden") or 20,
        input_bias=tuple(_get(config, "lstm_input_bias") or (-5.0, -4.0)),
        remat=bool(_get(config, "remat", False)))
  if name == "reptile":
    batch = _get(config, "inner_batch_size")
    if test and _get(config, "test_inner_batch_size") is not None:
      batch = _get(config, "test_inner_batch_size")
    return reptile(model, inner_lr=config.inner_lr, inner_steps=steps,
                   carry_inner_state=bool(_get(config, "carry_inner_state",
                                               False)),
                   inner_batch_size=None if batch is None else int(batch),
                   task=task)
  kwargs = dict(inner_steps=steps, task=task,
                first_order=name == "fomaml" or bool(_get(config, "first_order", False)),
                remat=bool(_get(config, "remat", False)))
  if _get(config, "multi_step_loss", False) and steps > 0:
    kwargs["multi_step_loss"] = [1.0 / steps] * steps
  if name == "meta_sgd":
    return meta_sgd(model, inner_lr=config.inner_lr, **kwargs)
  if _get(config, "lslr", False):
    # Rates are learned per layer and per TRAINING step: test-time steps
    # beyond them reuse the last one.
    train_steps = config.inner_steps
    rows = jnp.minimum(jnp.arange(steps), train_steps - 1)
    kwargs["inner_opt_fn"] = lambda rates: learned_sgd(
        jax.tree.map(lambda r: jnp.asarray(r)[rows], rates), per_step=True)
    kwargs["inner_hparams"] = per_layer_per_step_rates(
        config.inner_lr, train_steps)
  else:
    kwargs["inner_lr"] = config.inner_lr
  if name == "anil":
    return anil(model, **kwargs)
  return maml(model, **kwargs)


def _build_embedding_learner(config, ways: int) -> Learner:
  """ProtoNets, Matching Nets and the Baselines: a headless `build_model`."""
  embedding = build_model(config, None)
  name = config.learner
  if name == "protonet":
    return protonet(embedding, ways=ways,
                    distance=_get(config, "distance") or "euclidean",
                    scale=_get(config, "scale") or 10.0)
  if name == "matching_net":
    from metajax.learners.matching import matching_net  # pylint: disable=g-import-not-at-top
    return matching_net(embedding, ways=ways, fce=bool(_get(config, "fce", False)),
                        read_steps=_get(config, "read_steps") or 5,
                        scale=_get(config, "scale") or 1.0)
  num_classes = _get(config, "num_classes")
  if num_classes is None:
    raise ValueError(
        f"config.num_classes is unset: {name} pre-trains a head over every "
        "meta-train class; train_and_evaluate fills it in from the data.")
  finetune_opt = optax.chain(
      optax.add_decayed_weights(_get(config, "finetune_weight_decay", 1e-3)),
      optax.adam(config.finetune_lr))
  return baseline(embedding, num_classes=num_classes, ways=ways,
                  classifier="cosine" if name == "baseline_pp" else "linear",
                  finetune_steps=config.finetune_steps,
                  finetune_opt=finetune_opt,
                  normalize_features=bool(_get(config, "normalize_features", False)),
                  transductive_steps=_get(config, "transductive_steps") or 0,
                  transductive_opt=optax.adam(_get(config, "transductive_lr") or 5e-5),
                  entropy_weight=_get(config, "entropy_weight", 1.0))


def _build_sequence_learner(config, ways: int) -> Learner:
  """MANN and SNAIL over a headless `build_model` embedding."""
  embedding = build_model(config, None)
  if config.learner == "snail":
    from metajax.learners.snail import snail  # pylint: disable=g-import-not-at-top
    return snail(embedding, ways=ways, shots=config.shots,
                 attention=tuple(tuple(a) for a in _get(
                     config, "attention", ((64, 32), (256, 128), (512, 256)))),
                 tc_filters=_get(config, "tc_filters", 128))
  from metajax.learners.mann import mann  # pylint: disable=g-import-not-at-top
  return mann(embedding, ways=ways, **mann_kwargs(config),
              online_loss=bool(_get(config, "online_loss", False)))


def freeze_embedding(learner: Learner) -> Learner:
  """`learner` with no gradient through its `meta_params["embed"]`.

  Its functions see the embedding's parameters under `jax.lax.stop_gradient`,
  so the meta-gradient of "embed" is exactly zero and its backward pass is
  never computed (nor counted in the logged gradient norm). The outer
  optimizers of `build_outer_opt` (Adam, SGD) then leave those parameters
  exactly as they are (`config.freeze_embedding`).
  """
  if learner.outer_grad is not None:
    raise ValueError("freeze_embedding: a learner with its own outer_grad "
                     "is not supported.")

  def frozen(meta_params):
    return dict(meta_params, embed=jax.lax.stop_gradient(meta_params["embed"]))

  task_loss = None
  if learner.task_loss is not None:
    task_loss = lambda p, ep, k: learner.task_loss(frozen(p), ep, k)
  return learner._replace(
      adapt=lambda p, support, k: learner.adapt(frozen(p), support, k),
      predict=lambda p, state, q: learner.predict(frozen(p), state, q),
      task_loss=task_loss)


def mann_kwargs(config) -> Dict[str, Any]:
  """The memory and controller sizes of a MANN config, as `mann` takes them
  (also `online_logits_fn`'s, with `ways`)."""
  return dict(memory_slots=_get(config, "memory_slots", 128),
              memory_size=_get(config, "memory_size", 40),
              controller_size=_get(config, "controller_size", 200),
              read_heads=_get(config, "read_heads", 4),
              gamma=float(_get(config, "gamma", 0.95)),
              # A config without these fields (a run written before them)
              # wrote its keys and had no key strength, as the paper's
              # equations read.
              add_vectors=bool(_get(config, "add_vectors", False)),
              key_strength=bool(_get(config, "key_strength", False)))


def _with_num_classes(config, sources):
  """`config` with `num_classes` set from the training classes (Baselines)."""
  if config.learner not in PRETRAINED_LEARNERS:
    return config
  found = sources["train"].num_classes
  given = _get(config, "num_classes")
  if given is not None and given != found:
    raise ValueError(f"config.num_classes={given} but the training split has "
                     f"{found} classes; leave it unset.")
  config = ml_collections.ConfigDict(_config_dict(config))
  config.num_classes = found
  return config


OUTER_OPTS = ("adam", "sgd")
SCHEDULES = ("constant", "linear_decay")


def build_outer_opt(config) -> optax.GradientTransformation:
  """`config.outer_opt` ("adam" or "sgd") at `config.outer_lr`, constant or
  decayed linearly to 0 over `num_steps` (`config.outer_lr_schedule`), after
  clipping the meta-gradient's global norm to `config.outer_grad_clip` if
  set; with `config.carry_inner_state`, Reptile's carried inner statistics
  are set to their new value (`reptile.carry_outer_opt`)."""
  lr = config.outer_lr
  if _get(config, "outer_lr_schedule", "constant") == "linear_decay":
    lr = optax.linear_schedule(config.outer_lr, 0.0, max(config.num_steps, 1))
  opt = optax.sgd(lr) if _get(config, "outer_opt", "adam") == "sgd" else optax.adam(lr)
  clip = _get(config, "outer_grad_clip")
  opt = optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
  return carry_outer_opt(opt) if _get(config, "carry_inner_state") else opt


def build_sources(config) -> Dict[str, episodes_lib.TaskSource]:
  """Task sources for "train", "val" and "test" (test uses the test_* sizes)."""
  if config.dataset == "sinusoid":
    train = SinusoidSampler(shots=config.shots, queries=config.queries)
    test = SinusoidSampler(shots=test_value(config, "shots"),
                           queries=test_value(config, "queries"))
    return {"train": train, "val": test, "test": test}
  splits = load_splits(config)
  make = lambda split, ways, shots, queries: episodes_lib.EpisodeSampler(
      splits[split], ways=ways, shots=shots, queries=queries)
  test_sizes = [test_value(config, n) for n in ("ways", "shots", "queries")]
  if config.learner in PRETRAINED_LEARNERS:
    train = episodes_lib.ClassBatchSampler(splits["train"],
                                           batch_size=config.batch_size)
  else:
    train = make("train", config.ways, config.shots, config.queries)
  if _get(config, "augment", False):
    from metajax.data import augment  # pylint: disable=g-import-not-at-top
    pad = _get(config, "augment_pad")
    if pad is None:  # 4 pixels at 32x32, 8 at 84x84, as in the papers
      pad = min(8, max(1, _image_size(config) // 8))
    train = augment.Augmented(train, pad=pad)
  return {"train": train,
          "val": make("val", *test_sizes),
          "test": make("test", *test_sizes)}


def _image_size(config) -> int:
  """`config.image_size`, or the dataset's own when unset (None)."""
  size = _get(config, "image_size")
  return IMAGE_DATASETS[config.dataset] if size is None else size


def load_splits(config):
  """{"train", "val", "test"} -> ClassImages of the config's image dataset.

  Omniglot reads `split`, `rotations`, `split_seed`, `num_train`, `num_val`;
  the other datasets have their published splits and ignore those fields.
  `data_dir`: Omniglot's zips, the folder of the miniImageNet /
  tieredImageNet files, or the TFDS data_dir of cifar100 (see the README).
  """
  data_dir = _get(config, "data_dir") or None
  size = _image_size(config)
  # pylint: disable=g-import-not-at-top
  if config.dataset in ("cifar_fs", "fc100"):
    from metajax.data import cifar
    return cifar.load(config.dataset, data_dir=data_dir, image_size=size)
  if config.dataset in ("mini_imagenet", "tiered_imagenet"):
    from metajax.data import imagenet_subsets
    return imagenet_subsets.load(config.dataset, data_dir=data_dir,
                                 image_size=size)
  from metajax.data import omniglot
  # pylint: enable=g-import-not-at-top
  return omniglot.load(
      data_dir=data_dir,
      split=_get(config, "split", "seeded"),
      image_size=size,
      rotations=bool(_get(config, "rotations", True)),
      seed=_get(config, "split_seed", 0),
      num_train=_get(config, "num_train"),
      num_val=_get(config, "num_val"))


def _config_dict(config) -> Dict[str, Any]:
  return json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)


def _read_config_json(workdir) -> Optional[Dict[str, Any]]:
  """`<workdir>/config.json` as a dict; None if absent; ValueError if broken."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    old = json.loads(text)
  except ValueError as e:
    raise ValueError(f"{path} is not valid JSON ({e}); it was edited or "
                     "damaged. Restore it from your config, or use a new "
                     "--workdir.") from None
  if not isinstance(old, dict):
    raise ValueError(f"{path} holds a {type(old).__name__}, not a config.")
  return old


def _check_same_config(workdir, config):
  old = _read_config_json(workdir)
  if old is None:
    return
  new = _config_dict(config)
  allowed = {"num_steps", "eval_episodes", "val_every", "val_episodes",
             "checkpoint_every", "log_every", "data_dir", "paper_result",
             "on_nonfinite", "num_devices", "tasks_per_chunk"}
  # Fields added after runs were written: a run without one had its default.
  later = {"compute_dtype": "float32", "select_on_validation": False,
           "norm": True, "embedding_init": "", "online_loss": False,
           "add_vectors": False, "key_strength": False,
           "freeze_embedding": False, "carry_inner_state": False,
           "inner_batch_size": None, "test_inner_batch_size": None}
  diff = sorted(k for k in set(old) | set(new)
                if k not in allowed
                and old.get(k, later.get(k)) != new.get(k, later.get(k)))
  if diff:
    raise ValueError(
        f"{workdir!r} holds a run with a different config (fields "
        f"{', '.join(f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in diff)}); "
        "use a new --workdir or the same config to resume.")


def _with_embedding_from(config, learner, outer_opt, source):
  """The initial state with `config.embedding_init`'s embedding, or None.

  The rest is initialized as `meta_train` would (same key, same example), so
  only the embedding differs from a run without it; a checkpoint in the
  workdir still takes precedence (a resumed run keeps its trained weights).
  """
  path = _get(config, "embedding_init") or ""
  if not path:
    return None
  embed = load_run(path).meta_params
  embed = embed.get("embed") if isinstance(embed, dict) else None
  if embed is None:
    raise ValueError(f"config.embedding_init={path!r}: that run's "
                     "meta-parameters have no 'embed'.")
  init_key, _ = train_lib.seed_keys(config.seed)
  example = source.sample_batch(episodes_lib.step_rng(config.seed, 0), 1)
  state = jax.jit(lambda k, ex: train_lib.init_train_state(
      learner, outer_opt, k, ex))(init_key, example)
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, str(a.dtype)), tree)
  if shapes(embed) != shapes(state.meta_params["embed"]):
    raise ValueError(
        f"config.embedding_init={path!r}: its embedding is not this run's "
        f"network (its parameters {shapes(embed)}, this run's "
        f"{shapes(state.meta_params['embed'])}); give a run with the same "
        "model, filters, pooling, norm and image size.")
  meta_params = dict(state.meta_params, embed=embed)
  return train_lib.TrainState(step=state.step, meta_params=meta_params,
                              opt_state=outer_opt.init(meta_params))


def train_and_evaluate(config, workdir: Optional[str], *,
                       callback: Optional[train_lib.Callback] = None
                       ) -> Dict[str, Any]:
  """Meta-trains, evaluates on the test classes, writes `results.json`.

  Validates the config and builds the data before anything is written to
  `workdir`; resumes from `workdir` if it holds a run of the same config.
  `callback(step, metrics)` is called after every training step (see
  `train.meta_train`), e.g. to show progress.

  Returns:
    The results dict (also in `<workdir>/results.json`): config, metric,
    mean, ci95, episodes.
  """
  validate(config)
  select = bool(_get(config, "select_on_validation", False))
  if select and workdir is None:
    raise ValueError("config.select_on_validation=True keeps the best state "
                     "in the workdir: give one.")
  sources = build_sources(config)
  config = _with_num_classes(config, sources)
  learner = build_learner(config)
  test_learner = build_learner(config, test=True)
  primary = jax.process_index() == 0  # with several processes, one writes
  # Before anything is written: a bad embedding_init is refused first.
  outer_opt = build_outer_opt(config)
  initial = _with_embedding_from(config, learner, outer_opt, sources["train"])
  if workdir is not None:
    _check_same_config(workdir, config)
    os.makedirs(workdir, exist_ok=True)
    if primary:
      metrics_io.write_json(os.path.join(workdir, "config.json"), _config_dict(config))
  train_kwargs = dict(
      outer_opt=outer_opt,
      meta_batch_size=config.meta_batch_size, seed=config.seed,
      workdir=workdir, checkpoint_every=_get(config, "checkpoint_every", 1000),
      log_every=_get(config, "log_every", 100),
      val_source=sources["val"], val_learner=test_learner,
      val_every=_get(config, "val_every", 0),
      val_episodes=_get(config, "val_episodes", 100), callback=callback,
      on_nonfinite=_get(config, "on_nonfinite") or "raise",
      mesh=parallel.task_mesh(_get(config, "num_devices")),
      tasks_per_chunk=_get(config, "tasks_per_chunk"),
      keep_best=select)
  state = initial
  switch = min(_get(config, "first_order_steps") or 0, config.num_steps)
  if switch:  # MAML++: a first-order phase over the same meta-parameters.
    first_order = ml_collections.ConfigDict(_config_dict(config))
    first_order.first_order = True
    state = train_lib.meta_train(build_learner(first_order), sources["train"],
                                 num_steps=switch, initial_state=state,
                                 **train_kwargs)
  state = train_lib.meta_train(learner, sources["train"],
                               num_steps=config.num_steps,
                               initial_state=state, **train_kwargs)
  selected = {}
  meta_params = parallel.local_copy(state.meta_params)
  if select:
    best = train_lib.read_best(workdir)
    if best is not None:  # None: no validation step within num_steps
      meta_params = _restore(workdir, state, best["step"],
                             train_lib.BEST_FOLDER)[1].meta_params
      selected = {"selected_step": best["step"],
                  f"selected_val_{best['metric']}": best["mean"]}
  result = eval_lib.evaluate(test_learner, meta_params, sources["test"],
                             episodes=config.eval_episodes,
                             seed=test_seed(config))
  results = {"config": _config_dict(config), "metric": result.metric,
             "mean": result.mean, "ci95": result.ci95,
             "episodes": result.episodes, **selected}
  if workdir is not None and primary:
    metrics_io.write_json(os.path.join(workdir, "results.json"), results)
  return results


class Run(NamedTuple):
  """A finished run: its config, test-time learner and meta-parameters."""
  config: ml_collections.ConfigDict
  learner: Learner
  meta_params: Params


def _restore(workdir, target, step, folder="checkpoints"):
  """(step, state) of `<workdir>/<folder>` restored into `target`; step None:
  the latest ((None, target) when there is none)."""
  checkpointer = ckpt_lib.Checkpointer(workdir, folder=folder)
  try:
    return checkpointer.restore(target, step)
  finally:
    checkpointer.close()


def load_run(workdir: str, step: Optional[int] = None,
             best: Optional[bool] = None) -> Run:
  """Loads the run in `workdir`: its config and meta-parameters.

  Args:
    workdir: the run's folder.
    step: a checkpoint step of `<workdir>/checkpoints`; None: the latest.
    best: load the state of the best validation (`<workdir>/best`, see
      `train.meta_train`'s `keep_best`) instead; None: when the config has
      `select_on_validation` (the parameters its results were computed on)
      and a best state was kept.
  """
  saved = _read_config_json(workdir)
  if saved is None:
    raise ValueError(f"{workdir!r} holds no run (no config.json).")
  config = ml_collections.ConfigDict(saved)
  learner = build_learner(config)
  test_learner = build_learner(config, test=True)
  outer_opt = build_outer_opt(config)
  example = _example_episode(config)
  init_key, _ = train_lib.seed_keys(config.seed)
  # Shapes only (nothing is computed or compiled): the restore's target.
  target = jax.eval_shape(
      lambda k, ex: train_lib.init_train_state(learner, outer_opt, k, ex),
      init_key, jax.tree.map(lambda a: a[None], example))
  kept = train_lib.read_best(workdir)
  if best is None:
    best = bool(_get(config, "select_on_validation", False)) and (
        kept is not None and step is None)
  if best:
    if step is not None:
      raise ValueError("load_run: give step or best=True, not both.")
    if kept is None:
      raise ValueError(f"{workdir!r} kept no best state (no {train_lib.BEST_JSON}"
                       "; the run did not set select_on_validation, or "
                       "validated no step yet).")
    return Run(config=config, learner=test_learner, meta_params=_restore(
        workdir, target, kept["step"], train_lib.BEST_FOLDER)[1].meta_params)
  restored, state = _restore(workdir, target, step)
  if restored is None:
    raise ValueError(f"{workdir!r} holds no checkpoint (the run stopped "
                     "before its first save).")
  return Run(config=config, learner=test_learner, meta_params=state.meta_params)


def _input_shape(config):
  if config.dataset == "sinusoid":
    return (1,)
  size = _image_size(config)
  return (size, size, 1 if config.dataset == "omniglot" else 3)


def _example_episode(config) -> Episode:
  shape = _input_shape(config)
  if config.dataset == "sinusoid":
    z = np.zeros((1,) + shape, np.float32)
    return Episode(z, np.zeros((1, 1), np.float32), z, np.zeros((1, 1), np.float32))
  z = np.zeros((1,) + shape, np.uint8)
  return Episode(z, np.zeros((1,), np.int32), z, np.zeros((1,), np.int32))


def predict(run: Run, support_x, support_y, query_x, *, seed: int = 0):
  """Adapts `run` to a user's support set and returns outputs for `query_x`.

  Args:
    run: from `load_run`.
    support_x: [n, *input_shape]: uint8 images (scaled by 1/255 like the
      training data) or floats already in the training range.
    support_y: [n] int labels in 0..ways-1 (classification) or [n, 1] floats.
    query_x: [m, *input_shape].
    seed: key for stochastic learners.

  Returns:
    logits [m, ways] (classification) or predictions [m, 1] (regression).

  Raises:
    ValueError: before any computation, naming the argument: shapes that do
      not fit the run or each other, an empty support set, dtypes other than
      uint8 / float (integer labels for classification), NaN or infinite
      values, labels outside 0..ways-1.
  """
  config = run.config
  shape = _input_shape(config)
  support_x, query_x = np.asarray(support_x), np.asarray(query_x)
  support_y = np.asarray(support_y)
  for name, x in (("support_x", support_x), ("query_x", query_x)):
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
      raise ValueError(f"{name} has shape {x.shape}; this run expects "
                       f"[n, {', '.join(map(str, shape))}].")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
      raise ValueError(f"{name} has dtype {x.dtype}; use uint8 or float.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
      raise ValueError(f"{name} holds NaN or infinite values.")
  if support_x.shape[0] == 0:
    raise ValueError("support_x is empty; give at least one example per class.")
  regression = config.dataset == "sinusoid"
  if support_y.ndim == 0 or support_y.shape[0] != support_x.shape[0]:
    raise ValueError(f"support_y has shape {support_y.shape} but support_x "
                     f"has {support_x.shape[0]} rows.")
  if support_y.shape[1:] not in (((), (1,)) if regression else ((),)):
    raise ValueError(f"support_y has shape {support_y.shape}; this run expects "
                     f"{'[n] or [n, 1] targets' if regression else '[n] labels'}.")
  if not regression:
    ways = test_value(config, "ways")
    if not np.issubdtype(support_y.dtype, np.integer):
      raise ValueError(f"support_y must hold integer labels, got {support_y.dtype}.")
    if support_y.min() < 0 or support_y.max() >= ways:
      raise ValueError(f"support_y labels must lie in 0..{ways - 1} for this "
                       f"{ways}-way run; got {sorted(set(support_y.tolist()))}.")
    support_y = support_y.astype(np.int32)
  else:
    if not (np.issubdtype(support_y.dtype, np.floating)
            or np.issubdtype(support_y.dtype, np.integer)):
      raise ValueError(f"support_y has dtype {support_y.dtype}; use float.")
    if not np.isfinite(support_y).all():
      raise ValueError("support_y holds NaN or infinite values.")
    support_y = support_y.astype(np.float32).reshape(-1, 1)
  key = jax.random.key(seed)
  learner = run.learner

  @jax.jit  # one program: op by op, a scan or vmap learner is slow.
  def adapt_predict(meta_params, support, query_x, key):
    return learner.predict(meta_params, learner.adapt(meta_params, support, key),
                           query_x)

  return np.asarray(adapt_predict(run.meta_params, (support_x, support_y),
                                  query_x, key))
