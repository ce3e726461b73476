r"""Test-time augmentation and ensembles of finished classification runs.

  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.tta_evaluate \
      --workdir=W --episodes=400 --copies=1,8,16
  python -m experiments.tta_evaluate --workdir=W1,W2 --copies=1   # ensemble

Each test episode is classified K times, once as it is and K - 1 times with
its support and query images randomly warped (`metajax.data.augment.
affine_warp`, by default at the ranges of the run's own `warp_kwargs`, or
`augment.Warped`'s defaults, times `--strength`); each query's class is the
argmax of its log-probabilities averaged over the K copies. K = 1 is
`experiments.evaluate`: the same episodes (the run's test seed, batches of
50), the same predictions. Each query is still classified on its own when
the run's learner does so (e.g. `query_norm="support"`). Prints one line per
K: the mean accuracy (and error) with its 95 % interval.

Several workdirs make an ensemble: each copy of each episode is classified by
every run, and a query's class is the argmax of the log-probabilities summed
over runs and copies. The episodes (and the warps' ranges) are the first
run's: its test seed, its data. The runs must agree on what defines a test
episode (dataset, data options, image size, test ways, shots and queries,
within-group episodes); they may differ in anything else (their seeds, their
training). The binary then also prints each run's own accuracy on those
episodes (K = 1), the baseline the ensemble is to beat.
"""

import json
from typing import Dict, Optional, Sequence, Union

from absl import app
from absl import flags
import jax
import numpy as np

from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs
from metajax.data import augment
from metajax.data.episodes import step_rng


BATCH = 50  # episodes per sampled batch, as metajax.evaluate


def warp_ranges(config, strength: float) -> Dict[str, object]:
  """The run's warp ranges (`warp_kwargs` over Warped's defaults), scaled."""
  defaults = augment.Warped.__init__.__kwdefaults__
  kw = {k: defaults[k] for k in ("rotation", "shear", "scale", "translate")}
  kw.update(config.warp_kwargs.to_dict() if config.get("warp_kwargs") else {})
  low, high = kw["scale"]
  return {
    "rotation": kw["rotation"] * strength,
    "shear": kw["shear"] * strength,
    "scale": (1 - (1 - low) * strength, 1 + (high - 1) * strength),
    "translate": kw["translate"] * strength,
  }


# The config fields that define a test episode: an ensemble's runs must agree.
EPISODE_FIELDS = (
  "dataset",
  "data_kwargs",
  "image_size",
  "test_ways",
  "test_shots",
  "test_queries",
  "test_within_groups",
)


def _member(run):
  """A run's jitted (params, support x, y, query x, key) -> log-probs."""
  learner = from_config.build_learner(run.config, test=True)

  @jax.jit
  def log_probs(params, sx, sy, qx, key):
    state = learner.adapt(params, (sx, sy), key)
    return jax.nn.log_softmax(learner.predict(params, state, qx))

  return lambda *args: np.asarray(log_probs(run.meta_params, *args))


def _check_members(loaded, workdirs) -> None:
  """Refuses runs that are not classifiers of the same test episodes."""
  config = loaded[0].config
  if config.dataset == "sinusoid":
    raise ValueError(
      "test-time augmentation warps images; this run is a sinusoid regression."
    )
  for run, workdir in zip(loaded[1:], workdirs[1:]):
    differ = [k for k in EPISODE_FIELDS if run.config.get(k) != config.get(k)]
    if differ:
      raise ValueError(
        f"an ensemble's runs must share their test episodes: {workdir} "
        f"differs from {workdirs[0]} in {differ}."
      )


def tta_accuracies(
  workdir: Union[str, Sequence[str]],
  episodes: int,
  copies: Sequence[int],
  strength: float = 1.0,
  split: str = "test",
  episodes_from: Optional[str] = None,
) -> Dict[int, eval_lib.EvalResult]:
  """K -> the per-episode accuracies with K copies (see the module doc).

  `workdir` is one run or a sequence of runs (an ensemble). The episodes
  are those of `episodes_from` (a run's workdir; by default the first run).
  """
  copies = sorted(set(int(k) for k in copies))
  if not copies or copies[0] < 1:
    raise ValueError(f"copies must be integers >= 1, got {copies}.")
  workdirs = [workdir] if isinstance(workdir, str) else list(workdir)
  if not workdirs:
    raise ValueError("give at least one workdir.")
  if episodes_from is not None:
    workdirs = [episodes_from, *workdirs]
  loaded = [runs.load_run(w) for w in workdirs]
  _check_members(loaded, workdirs)
  config = loaded[0].config
  members = [_member(run) for run in loaded[1 if episodes_from else 0 :]]
  source = from_config.build_sources(config)[split]
  seed = (
    from_config.test_seed(config)
    if split == "test"
    else from_config.val_seed(config)
  )
  ranges = warp_ranges(config, strength)

  values = {k: [] for k in copies}
  key = jax.random.key(seed)
  for i in range(-(-episodes // BATCH)):
    batch = source.sample_batch(step_rng(seed, i), min(BATCH, episodes))
    # The per-task keys of metajax.evaluate's batch i.
    keys = jax.random.split(jax.random.fold_in(key, i), len(batch.query_y))
    for j in range(len(batch.query_y)):
      if i * BATCH + j >= episodes:
        break
      sx, sy = batch.support_x[j], batch.support_y[j]
      qx, qy = batch.query_x[j], batch.query_y[j]
      rng = np.random.default_rng((seed, i, j))
      total = 0.0
      for k in range(1, copies[-1] + 1):
        if k > 1:
          sx_k = augment.affine_warp(sx, rng, **ranges)
          qx_k = augment.affine_warp(qx, rng, **ranges)
        else:
          sx_k, qx_k = sx, qx
        for log_probs in members:
          total = total + log_probs(sx_k, sy, qx_k, keys[j])
        if k in values:
          values[k].append(
            float(np.mean(total.argmax(-1) == qy, dtype=np.float32))
          )
  return {
    k: eval_lib.EvalResult(
      metric="accuracy",
      mean=float(np.mean(v)),
      ci95=eval_lib.confidence_interval(v),
      episodes=len(v),
      values=np.asarray(v),
    )
    for k, v in values.items()
  }


def define_flags():
  """The command line's flags (defined by the binary only, so that tests
  can import this module beside other binaries)."""
  flags.DEFINE_list(
    "workdir",
    None,
    "A finished run, or several (comma separated): an ensemble.",
    required=True,
  )
  flags.DEFINE_integer("episodes", 400, "Test episodes.")
  flags.DEFINE_list(
    "copies", ["1", "8", "16"], "Numbers of copies K to report."
  )
  flags.DEFINE_float(
    "strength",
    1.0,
    "Scales the warps' ranges (rotation, shear, the "
    "scale's distance from 1, translation).",
  )
  flags.DEFINE_enum(
    "split", "test", ["test", "val"], "The classes to evaluate on."
  )


def _line(r: eval_lib.EvalResult, **fields) -> str:
  """One JSON line: the fields, then the result's accuracy and error."""
  return json.dumps(
    {
      **fields,
      "accuracy": r.mean,
      "error": 1 - r.mean,
      "ci95": r.ci95,
      "episodes": r.episodes,
    }
  )


def main(argv):
  del argv
  f = flags.FLAGS
  copies = [int(k) for k in f.copies]
  if len(f.workdir) > 1:  # each run alone, on the ensemble's episodes
    for w in f.workdir:
      r = tta_accuracies(
        w, f.episodes, [1], split=f.split, episodes_from=f.workdir[0]
      )[1]
      print(_line(r, run=w, copies=1, split=f.split))
  results = tta_accuracies(f.workdir, f.episodes, copies, f.strength, f.split)
  for k, r in results.items():
    print(
      _line(
        r,
        runs=len(f.workdir),
        copies=k,
        strength=f.strength,
        split=f.split,
      )
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
