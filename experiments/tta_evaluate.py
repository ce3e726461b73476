r"""Test-time augmentation of a finished classification run (issue 21).

  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.tta_evaluate \
      --workdir=W --episodes=400 --copies=1,8,16

Each test episode is classified K times, once as it is and K - 1 times with
its support and query images randomly warped (`metajax.data.augment.
affine_warp`, by default at the ranges of the run's own `warp_kwargs`, or
`augment.Warped`'s defaults, times `--strength`); each query's class is the
argmax of its log-probabilities averaged over the K copies. K = 1 is
`experiments.evaluate`: the same episodes (the run's test seed, batches of
50), the same predictions. Each query is still classified on its own when
the run's learner does so (e.g. `query_norm="support"`). Prints one line per
K: the mean accuracy (and error) with its 95 % interval.
"""

import json
from typing import Dict, Sequence

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


def tta_accuracies(
  workdir: str,
  episodes: int,
  copies: Sequence[int],
  strength: float = 1.0,
  split: str = "test",
) -> Dict[int, eval_lib.EvalResult]:
  """K -> the per-episode accuracies with K copies (see the module doc)."""
  copies = sorted(set(int(k) for k in copies))
  if not copies or copies[0] < 1:
    raise ValueError(f"copies must be integers >= 1, got {copies}.")
  run = runs.load_run(workdir)
  config = run.config
  if config.dataset == "sinusoid":
    raise ValueError(
      "test-time augmentation warps images; this run is a sinusoid regression."
    )
  learner = from_config.build_learner(config, test=True)
  source = from_config.build_sources(config)[split]
  seed = (
    from_config.test_seed(config)
    if split == "test"
    else from_config.val_seed(config)
  )
  ranges = warp_ranges(config, strength)

  @jax.jit
  def log_probs(params, sx, sy, qx, key):
    state = learner.adapt(params, (sx, sy), key)
    return jax.nn.log_softmax(learner.predict(params, state, qx))

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
        total = total + np.asarray(
          log_probs(run.meta_params, sx_k, sy, qx_k, keys[j])
        )
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
  flags.DEFINE_string("workdir", None, "A finished run.", required=True)
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


def main(argv):
  del argv
  f = flags.FLAGS
  results = tta_accuracies(
    f.workdir, f.episodes, [int(k) for k in f.copies], f.strength, f.split
  )
  for k, r in results.items():
    print(
      json.dumps(
        {
          "copies": k,
          "strength": f.strength,
          "split": f.split,
          "accuracy": r.mean,
          "error": 1 - r.mean,
          "ci95": r.ci95,
          "episodes": r.episodes,
        }
      )
    )


if __name__ == "__main__":
  define_flags()
  app.run(main)
