"""A run in a workdir: train, evaluate and save it from a config, load it back.

`train_and_evaluate` builds the pieces of a config (`metajax.from_config`),
meta-trains (`train.meta_train`), evaluates on the test classes
(`evaluate.evaluate`) and writes `<workdir>/config.json` and `results.json`;
`load_run` reads a finished run back and `predict` applies it to a user's
own support and query sets.
"""

import os
from typing import Any, Dict, NamedTuple, Optional

import jax
import ml_collections
import numpy as np

from metajax import _saved_config as saved_config
from metajax import best as best_lib
from metajax import checkpoint as ckpt_lib
from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import metrics_io
from metajax import parallel
from metajax import step as step_lib
from metajax import train as train_lib
from metajax._saved_config import CONVERT_COMMAND as CONVERT_COMMAND
from metajax._saved_config import RESUMABLE as RESUMABLE
from metajax.data import episodes as episodes_lib
from metajax.types import Learner, Params


def _with_num_classes(config, sources):
  """`config` with `num_classes` set from the training split (for learners
  that take it; written to config.json so that `load_run` needs no data)."""
  found = getattr(sources["train"], "num_classes", None)
  if found is None:
    return config
  if config.num_classes is not None and config.num_classes != found:
    raise from_config.ConfigError(
      f"config.num_classes={config.num_classes} but the training split has "
      f"{found} classes; leave it unset."
    )
  config = ml_collections.ConfigDict(saved_config.config_dict(config))
  config.num_classes = found
  return config


def _with_embedding_from(config, learner, outer_opt, source):
  """The initial state with `config.embedding_init`'s embedding, or None.

  The rest is initialized as `meta_train` would (same key, same example), so
  only the embedding differs from a run without it; a checkpoint in the
  workdir still takes precedence (a resumed run keeps its trained weights).
  """
  path = config.embedding_init
  if not path:
    return None
  embed = load_run(path).meta_params
  embed = embed.get("embed") if isinstance(embed, dict) else None
  if embed is None:
    raise from_config.ConfigError(
      f"config.embedding_init={path!r}: that run's meta-parameters have no "
      "'embed'."
    )
  init_key, _ = step_lib.seed_keys(config.seed)
  example = source.sample_batch(episodes_lib.step_rng(config.seed, 0), 1)
  state = jax.jit(
    lambda k, ex: step_lib.init_train_state(learner, outer_opt, k, ex)
  )(init_key, example)
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, str(a.dtype)), tree)
  if shapes(embed) != shapes(state.meta_params["embed"]):
    raise from_config.ConfigError(
      f"config.embedding_init={path!r}: its embedding is not this run's "
      f"network (its parameters {shapes(embed)}, this run's "
      f"{shapes(state.meta_params['embed'])}); give a run with the same "
      "model, model_kwargs and image size."
    )
  meta_params = dict(state.meta_params, embed=embed)
  return step_lib.TrainState(
    step=state.step,
    meta_params=meta_params,
    opt_state=step_lib.outer_optimizer(learner, outer_opt).init(meta_params),
  )


def _meta_train(
  config, learner, test_learner, sources, outer_opt, initial, workdir, callback
):
  """`train.meta_train` over the config's settings (and the learner's
  warm-up phase first, if it has one)."""
  train_kwargs = dict(
    outer_opt=outer_opt,
    meta_batch_size=config.meta_batch_size,
    seed=config.seed,
    workdir=workdir,
    checkpoint_every=config.checkpoint_every,
    log_every=config.log_every,
    val_source=sources["val"],
    val_learner=test_learner,
    val_every=config.val_every,
    val_episodes=config.val_episodes,
    callback=callback,
    on_nonfinite=config.on_nonfinite,
    mesh=parallel.task_mesh(config.num_devices),
    tasks_per_chunk=config.tasks_per_chunk,
    keep_best=config.select_on_validation,
  )
  state = initial
  if learner.warmup is not None:  # e.g. MAML++'s first-order phase
    steps, warmup = learner.warmup
    steps = min(steps, config.num_steps)
    if steps:
      state = train_lib.meta_train(
        warmup,
        sources["train"],
        num_steps=steps,
        initial_state=state,
        **train_kwargs,
      )
  return train_lib.meta_train(
    learner,
    sources["train"],
    num_steps=config.num_steps,
    initial_state=state,
    **train_kwargs,
  )


def train_and_evaluate(
  config,
  workdir: Optional[str],
  *,
  callback: Optional[train_lib.Callback] = None,
) -> Dict[str, Any]:
  """Meta-trains, evaluates on the test classes, writes `results.json`.

  Validates the config and builds the data before anything is written to
  `workdir`; resumes from `workdir` if it holds a run of the same config.

  Args:
    config: a config (`metajax.from_config`, experiments/configs/).
    workdir: where the run is kept; None: in memory only.
    callback: `train.meta_train`'s per-step callback (e.g. a progress bar).

  Returns:
    The results dict (also in `<workdir>/results.json`): config, metric,
    mean, ci95, episodes (and the selected step, with select_on_validation).
  """
  config = from_config.validate(config)
  if config.select_on_validation and workdir is None:
    raise from_config.ConfigError(
      "config.select_on_validation=True keeps the best state in the "
      "workdir: give one."
    )
  sources = from_config.build_sources(config)
  config = _with_num_classes(config, sources)
  learner = from_config.build_learner(config)
  test_learner = from_config.build_learner(config, test=True)
  outer_opt = from_config.build_outer_opt(config)
  # Before anything is written: a bad embedding_init is refused first.
  initial = _with_embedding_from(config, learner, outer_opt, sources["train"])
  primary = jax.process_index() == 0  # with several processes, one writes
  if workdir is not None:
    saved_config.check_same_config(workdir, config)
    os.makedirs(workdir, exist_ok=True)
    if primary:
      metrics_io.write_json(
        os.path.join(workdir, "config.json"), saved_config.config_dict(config)
      )
  state = _meta_train(
    config,
    learner,
    test_learner,
    sources,
    outer_opt,
    initial,
    workdir,
    callback,
  )
  selected = {}
  meta_params = parallel.local_copy(state.meta_params)
  if config.select_on_validation:
    assert workdir is not None  # refused above
    best = best_lib.read_best(workdir)
    if best is not None:  # None: no validation step within num_steps
      meta_params = _restore(
        workdir, state, best["step"], best_lib.BEST_FOLDER
      )[1].meta_params
      selected = {
        "selected_step": best["step"],
        f"selected_val_{best['metric']}": best["mean"],
      }
  result = eval_lib.evaluate(
    test_learner,
    meta_params,
    sources["test"],
    episodes=config.eval_episodes,
    seed=from_config.test_seed(config),
  )
  results = {
    "config": saved_config.config_dict(config),
    "metric": result.metric,
    "mean": result.mean,
    "ci95": result.ci95,
    "episodes": result.episodes,
    **selected,
  }
  if workdir is not None and primary:
    metrics_io.write_json(os.path.join(workdir, "results.json"), results)
  return results


class Run(NamedTuple):
  """A finished run: its config, test-time learner and meta-parameters.

  Attributes:
    config: the run's config.
    learner: the test-time learner.
    meta_params: the meta-parameters the run kept.
  """

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


def load_run(
  workdir: str, step: Optional[int] = None, best: Optional[bool] = None
) -> Run:
  """Loads the run in `workdir`: its config and meta-parameters.

  Args:
    workdir: the run's folder.
    step: a checkpoint step of `<workdir>/checkpoints`; None: the latest.
    best: load the state of the best validation (`<workdir>/best`, see
      `train.meta_train`'s `keep_best`) instead; None: when the config has
      `select_on_validation` (the parameters its results were computed on)
      and a best state was kept.

  Raises:
    ValueError: no run or no checkpoint in `workdir`, a damaged
      config.json, or one of the format before the declarative configs
      (the message gives the command that converts it).
  """
  saved = saved_config.read_config_json(workdir)
  if saved is None:
    raise ValueError(f"{workdir!r} holds no run (no config.json).")
  config = from_config.complete(saved)
  learner = from_config.build_learner(config)
  outer_opt = from_config.build_outer_opt(config)
  init_key, _ = step_lib.seed_keys(config.seed)
  # Shapes only (nothing is computed or compiled): the restore's target.
  target = jax.eval_shape(
    lambda k, ex: step_lib.init_train_state(learner, outer_opt, k, ex),
    init_key,
    from_config.example_episode(config),
  )
  kept = best_lib.read_best(workdir)
  if best is None:
    best = config.select_on_validation and kept is not None and step is None
  test_learner = from_config.build_learner(config, test=True)
  if best:
    if step is not None:
      raise ValueError("load_run: give step or best=True, not both.")
    if kept is None:
      raise ValueError(
        f"{workdir!r} kept no best state (no {best_lib.BEST_JSON}"
        "; the run did not set select_on_validation, or "
        "validated no step yet)."
      )
    return Run(
      config=config,
      learner=test_learner,
      meta_params=_restore(workdir, target, kept["step"], best_lib.BEST_FOLDER)[
        1
      ].meta_params,
    )
  restored, state = _restore(workdir, target, step)
  if restored is None:
    raise ValueError(
      f"{workdir!r} holds no checkpoint (the run stopped "
      "before its first save)."
    )
  return Run(config=config, learner=test_learner, meta_params=state.meta_params)


def _check_inputs(config, support_x, support_y, query_x):
  """`predict`'s argument checks; returns support_y as the run takes it."""
  shape = from_config.input_shape(config)
  for name, x in (("support_x", support_x), ("query_x", query_x)):
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
      raise ValueError(
        f"{name} has shape {x.shape}; this run expects "
        f"[n, {', '.join(map(str, shape))}]."
      )
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
      raise ValueError(f"{name} has dtype {x.dtype}; use uint8 or float.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
      raise ValueError(f"{name} holds NaN or infinite values.")
  if support_x.shape[0] == 0:
    raise ValueError("support_x is empty; give at least one example per class.")
  regression = config.dataset == "sinusoid"
  if support_y.ndim == 0 or support_y.shape[0] != support_x.shape[0]:
    raise ValueError(
      f"support_y has shape {support_y.shape} but support_x "
      f"has {support_x.shape[0]} rows."
    )
  if support_y.shape[1:] not in (((), (1,)) if regression else ((),)):
    raise ValueError(
      f"support_y has shape {support_y.shape}; this run expects "
      f"{'[n] or [n, 1] targets' if regression else '[n] labels'}."
    )
  if regression:
    if not (
      np.issubdtype(support_y.dtype, np.floating)
      or np.issubdtype(support_y.dtype, np.integer)
    ):
      raise ValueError(f"support_y has dtype {support_y.dtype}; use float.")
    if not np.isfinite(support_y).all():
      raise ValueError("support_y holds NaN or infinite values.")
    return support_y.astype(np.float32).reshape(-1, 1)
  ways = from_config.test_value(config, "ways")
  if not np.issubdtype(support_y.dtype, np.integer):
    raise ValueError(
      f"support_y must hold integer labels, got {support_y.dtype}."
    )
  if support_y.min() < 0 or support_y.max() >= ways:
    raise ValueError(
      f"support_y labels must lie in 0..{ways - 1} for this "
      f"{ways}-way run; got {sorted(set(support_y.tolist()))}."
    )
  return support_y.astype(np.int32)


def predict(run: Run, support_x, support_y, query_x, *, seed: int = 0):
  """Adapts `run` to a user's support set and returns outputs for `query_x`.

  Args:
    run: from `load_run`.
    support_x: `[n, *input_shape]`: uint8 images (scaled by 1/255 like the
      training data) or floats already in the training range.
    support_y: [n] int labels in 0..ways-1 (classification) or [n, 1] floats.
    query_x: `[m, *input_shape]`.
    seed: key for stochastic learners.

  Returns:
    logits [m, ways] (classification) or predictions [m, 1] (regression).

  Raises:
    ValueError: before any computation, naming the argument: shapes that do
      not fit the run or each other, an empty support set, dtypes other than
      uint8 / float (integer labels for classification), NaN or infinite
      values, labels outside 0..ways-1.
  """
  support_x, query_x = np.asarray(support_x), np.asarray(query_x)
  support_y = _check_inputs(
    run.config, support_x, np.asarray(support_y), query_x
  )
  learner = run.learner

  @jax.jit  # one program: op by op, a scan or vmap learner is slow.
  def adapt_predict(meta_params, support, query_x, key):
    return learner.predict(
      meta_params, learner.adapt(meta_params, support, key), query_x
    )

  return np.asarray(
    adapt_predict(
      run.meta_params, (support_x, support_y), query_x, jax.random.key(seed)
    )
  )
