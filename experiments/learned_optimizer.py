r"""Meta-trains a learned optimizer and compares it with tuned SGD, momentum
and Adam on held-out tasks of the same family.

  python -m experiments.learned_optimizer \
      --config=experiments/configs/l2l_quadratic.py --workdir=/tmp/l2l

Writes to --workdir: theta.msgpack (the optimizer's weights), results.json
(final losses with 95% intervals at the horizon and at twice the horizon,
the tuned learning rates, the meta-training losses) and, when matplotlib is
installed, curves.png (mean loss against step). Prints a table.
"""

import json
import os
import sys
import tempfile

from absl import app
from absl import flags
import flax.serialization
import jax
import numpy as np
import optax
from ml_collections import config_flags

from metajax import evaluate as eval_lib
from metajax import learned_optimizers as lo
from metajax.inner import init_lstm_optimizer, lstm_optimizer

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  os.path.join(os.path.dirname(__file__), "configs", "l2l_quadratic.py"),
  "Config file, with an optional ':variant'.",
  lock_config=False,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Where results go (a fresh temporary folder if unset)."
)

BASELINES = {
  "sgd": optax.sgd,
  "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
  "adam": optax.adam,
}


def _stats(values):
  values = np.asarray(values, np.float64)
  median = float(np.median(values))
  if not np.isfinite(values).all():
    return {"mean": float("inf"), "ci95": float("nan"), "median": median}
  return {
    "mean": float(values.mean()),
    "ci95": float(eval_lib.confidence_interval(values)),
    "median": median,
  }


def run(config, workdir):
  """Meta-trains, tunes, compares; returns the results dict."""
  if config.task != "quadratic":
    raise ValueError(f"config.task={config.task!r}: only 'quadratic' exists.")
  tasks = lo.QuadraticTasks(dim=config.dim)
  make = lambda theta: lstm_optimizer(theta, output_scale=config.output_scale)
  theta = init_lstm_optimizer(
    jax.random.key(config.seed), config.hidden, config.layers
  )
  theta, history = lo.meta_train_optimizer(
    make,
    theta,
    tasks,
    outer_opt=optax.adam(config.outer_lr),
    num_steps=config.num_steps,
    horizon=config.horizon,
    unroll_steps=config.unroll_steps,
    batch_size=config.batch_size,
    seed=config.seed,
    first_order=config.first_order,
  )
  with open(os.path.join(workdir, "theta.msgpack"), "wb") as f:
    f.write(flax.serialization.to_bytes(theta))
  # Tuning and test tasks have seeds of their own, apart from training's.
  optimizers = {"lstm (learned)": make(theta)}
  tuned = {}
  for name, factory in BASELINES.items():
    lr, finals = lo.tune_learning_rate(
      factory,
      tasks,
      config.lr_grid,
      steps=config.horizon,
      num_tasks=config.tune_tasks,
      seed=config.seed + 1_000,
    )
    tuned[name] = {"lr": lr, "tuning_losses": finals}
    optimizers[f"{name} (lr {lr:g})"] = factory(lr)
  steps = 2 * config.horizon
  curves, table = {}, {}
  for name, tx in optimizers.items():
    losses = lo.evaluate_optimizer(
      tx,
      tasks,
      steps=steps,
      num_tasks=config.eval_tasks,
      seed=config.seed + 2_000,
    )
    curves[name] = np.mean(losses, axis=0).tolist()
    table[name] = {
      "horizon": _stats(losses[:, config.horizon]),
      "twice_horizon": _stats(losses[:, steps]),
    }
  return {
    "config": json.loads(config.to_json()),
    "final_losses": table,
    "tuned": tuned,
    "mean_loss_curves": curves,
    "meta_training_loss": history,
  }


def _plot(results, path):
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, curve in results["mean_loss_curves"].items():
    ax.plot(curve, label=name)
  ax.axvline(
    results["config"]["horizon"], color="gray", ls=":", label="training horizon"
  )
  ax.set(
    yscale="log",
    xlabel="step",
    ylabel="mean loss (held-out tasks)",
    title="Learned vs hand-designed optimizers",
  )
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="metajax_l2l_")
  os.makedirs(workdir, exist_ok=True)
  try:
    results = run(config, workdir)
  except (ValueError, FloatingPointError) as e:
    sys.exit(f"{type(e).__name__}: {e}")
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=1)
  plotted = _plot(results, os.path.join(workdir, "curves.png"))
  h = config.horizon
  print(
    f"| optimizer | loss at step {h}: mean +- 95% (median) "
    f"| loss at step {2 * h}: mean +- 95% (median) |"
  )
  print("| --- | --- | --- |")
  for name, row in results["final_losses"].items():
    cells = [
      f"{row[k]['mean']:.4g} +- {row[k]['ci95']:.2g} ({row[k]['median']:.3g})"
      for k in ("horizon", "twice_horizon")
    ]
    print(f"| {name} | {cells[0]} | {cells[1]} |")
  print(
    f"{config.eval_tasks} held-out tasks; results in {workdir}"
    + ("" if plotted else " (no curves.png: matplotlib is not installed)")
  )


if __name__ == "__main__":
  app.run(main)
