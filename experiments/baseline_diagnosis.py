r"""Why a Baseline lags (issue 21): one trained run, many test-time fits.

  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.baseline_diagnosis \
      --workdir=W --episodes=600

Evaluates a finished Baseline or Baseline++ run (`baseline_omniglot.py`,
`baseline_pp_omniglot.py`) on the same test episodes as `experiments.evaluate`
(its seed and batches of 50) under test-time variants that change only where
batch norm takes its statistics, where the new head starts and how it is fit,
or skip the fit (nearest class mean); the pre-training is untouched. Prints a
markdown table of the accuracies with 95 % intervals (docs/results.md holds
one).
"""

import math
from typing import Dict

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax import evaluate as eval_lib
from metajax import from_config
from metajax import runs
from metajax.learners.baseline import fit_head, head_logits, support_head
from metajax.learners.embedding import l2_normalize, to_float
from metajax.learners.protonet import class_means


# Where the embedding's batch norm takes its statistics.
STATS = {
  "own": "support and queries each their own (the library's)",
  "joint": "support and queries together (transductive)",
  "support": "the queries with the support set's",
  "reference": "those of meta-train images (a stand-in for running averages)",
}


def torch_start(key, features, labels, ways, classifier, scale):
  """PyTorch's default `nn.Linear` start: uniform +- 1/sqrt(D)."""
  del labels, classifier, scale
  bound = 1.0 / math.sqrt(features.shape[-1])
  k1, k2 = jax.random.split(key)
  return {
    "kernel": jax.random.uniform(
      k1, (features.shape[-1], ways), minval=-bound, maxval=bound
    ),
    "bias": jax.random.uniform(k2, (ways,), minval=-bound, maxval=bound),
  }


def variants(config) -> Dict[str, tuple]:
  """name -> (statistics, head start, optimizer, steps, fit?)."""
  kw = config.learner_kwargs
  classifier = "cosine" if config.learner == "baseline_pp" else "linear"
  adam = optax.chain(
    optax.add_decayed_weights(kw.finetune_weight_decay),
    optax.adam(kw.finetune_lr),
  )
  steps = kw.finetune_steps
  mean_start = "zeros" if classifier == "linear" else "prototypes"
  out = {}
  for stats in STATS:
    out[f"random start, batch norm: {stats}"] = (
      stats,
      "random",
      adam,
      steps,
      True,
    )
  out[f"{mean_start} start"] = ("own", mean_start, adam, steps, True)
  if classifier == "linear":
    sgd = optax.chain(
      optax.add_decayed_weights(kw.finetune_weight_decay),
      optax.sgd(kw.finetune_lr, momentum=0.9),
    )
    out["PyTorch's start"] = ("own", torch_start, adam, steps, True)
    out[
      "PyTorch's start, SGD 0.9 momentum, 2x steps (the paper's fit, "
      "full batch)"
    ] = ("own", torch_start, sgd, 2 * steps, True)
  out["nearest class mean (cosine), no fit"] = ("own", None, None, 0, False)
  return out


def variant_learner(
  learner, model, config, stats, start, opt, steps, fit, reference
):
  """`learner` with adapt/predict doing the variant's test-time fit."""
  classifier = "cosine" if config.learner == "baseline_pp" else "linear"
  ways = config.test_ways or config.ways

  def embed(params, x, rows=None):
    return model.apply(
      {"params": params["embed"]}, to_float(x), stats_rows=rows
    )

  def features(params, sx, qx):
    n = len(sx)
    if stats == "own":
      return embed(params, sx), embed(params, qx)
    if stats == "joint":
      both = embed(params, jnp.concatenate([sx, qx]))
    elif stats == "support":
      both = embed(params, jnp.concatenate([sx, qx]), n)
    else:
      both = embed(
        params, jnp.concatenate([reference, sx, qx]), len(reference)
      )[len(reference) :]
    return both[:n], both[n:]

  def adapt(params, support, key):
    return {"support": support, "key": key}

  def predict(params, state, qx):
    sx, sy = state["support"]
    fs, fq = features(params, sx, qx)
    if not fit:
      means = class_means(l2_normalize(fs), sy, ways)
      return l2_normalize(fq) @ l2_normalize(means).T
    scale = params["head"].get("scale", 10.0)
    if callable(start):
      head = start(state["key"], fs, sy, ways, classifier, scale)
    else:
      head = support_head(state["key"], fs, sy, ways, classifier, start, scale)
    head = fit_head(head, fs, sy, classifier=classifier, opt=opt, steps=steps)
    return head_logits(head, fq, classifier)

  return learner._replace(adapt=adapt, predict=predict)


def diagnose(
  workdir, episodes, reference_images=512, sizes=None
) -> Dict[str, eval_lib.EvalResult]:
  """variant name -> its result on the run's test episodes (`sizes`:
  test_ways / test_shots / test_queries to override)."""
  run = runs.load_run(workdir)
  config = run.config
  if config.learner not in ("baseline", "baseline_pp"):
    raise ValueError(
      f"{workdir} is a {config.learner} run; this diagnosis "
      "is for baseline and baseline_pp runs."
    )
  config.unlock()
  config.update({k: v for k, v in (sizes or {}).items() if v is not None})
  sources = from_config.build_sources(config)
  rng = np.random.default_rng(0)
  reference = np.concatenate(
    [
      sources["train"].sample(rng).query_x
      for _ in range(-(-reference_images // config.batch_size))
    ]
  )[:reference_images]
  model = from_config.build_model(config, None)
  learner = from_config.build_learner(config, test=True)
  results = {}
  for name, spec in variants(config).items():
    results[name] = eval_lib.evaluate(
      variant_learner(learner, model, config, *spec, reference),
      run.meta_params,
      sources["test"],
      episodes=episodes,
      seed=from_config.test_seed(config),
    )
  return results


def define_flags():
  """The command line's flags (defined by the binary only, so that tests
  can import this module beside other binaries)."""
  flags.DEFINE_string(
    "workdir", None, "A finished Baseline run.", required=True
  )
  flags.DEFINE_integer("episodes", 600, "Test episodes.")
  flags.DEFINE_integer("test_ways", None, "Default: the run's.")
  flags.DEFINE_integer("test_shots", None, "Default: the run's.")
  flags.DEFINE_integer("test_queries", None, "Default: the run's.")
  flags.DEFINE_integer(
    "reference_images",
    512,
    "Meta-train images whose batch-norm statistics "
    "stand in for running averages (the 'reference' statistics).",
  )


def main(argv):
  del argv
  f = flags.FLAGS
  sizes = {
    "test_ways": f.test_ways,
    "test_shots": f.test_shots,
    "test_queries": f.test_queries,
  }
  results = diagnose(f.workdir, f.episodes, f.reference_images, sizes)
  print("| test-time variant | accuracy (%) |\n| --- | --- |")
  for name, r in results.items():
    print(f"| {name} | {100 * r.mean:.2f} +- {100 * r.ci95:.2f} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)
