r"""Why iMAML lags (issues 21, 22): is the inner problem solved?

  METAJAX_DATA_DIR=../shared/data/omniglot python -m experiments.imaml_diagnosis \
      --inner_lr=0.1,0.02 --inner_steps=64,320 --cg_steps=0,5,20 --episodes=4

iMAML's meta-gradient, (I + H / lam)^-1 g (`metajax.imaml`), is the gradient
of the query loss through the inner problem's SOLUTION phi*: it is right
only where the inner steps reached a minimum of the support loss plus
lam / 2 ||phi - theta||^2. This script measures, on meta-training episodes
of `imaml_omniglot.py:5w1s` (or of a finished run's config and
meta-parameters, `--workdir`), for each inner step size and number of steps:

* how far the inner steps are from a minimum: the norm of the proximal
  objective's gradient at the phi they return, beside its norm at theta;
* the support loss at theta and at phi;
* for each number of conjugate-gradient steps, the cosine between the
  implicit meta-gradient and the exact gradient of the query loss through
  the same inner steps (`jax.grad` through them, MAML's way).

Where the inner problem is solved, the cosines approach 1 as CG steps grow;
where it is not, the implicit gradient points elsewhere. Prints a markdown
table of means over `--episodes` episodes (docs/results.md holds one).
"""

from typing import Dict, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.configs import imaml_omniglot
from metajax import from_config
from metajax import losses
from metajax import runs
from metajax.inner.loop import optimize
from metajax.learners.embedding import to_float
from metajax.learners.imaml import implicit_solution


def _define_flags() -> None:
  """The binary's flags, defined when it runs as a binary only: tests import
  `diagnose`, and a module-level --workdir would clash with other
  binaries' in the same process."""
  global _WORKDIR, _FILTERS, _LR, _STEPS, _CG, _EPISODES
  _WORKDIR = flags.DEFINE_string(
    "workdir", None, "A finished iMAML run (default: a fresh 5w1s init)."
  )
  _FILTERS = flags.DEFINE_integer(
    "filters", 64, "Conv4 width of the fresh init (ignored with --workdir)."
  )
  _LR = flags.DEFINE_list("inner_lr", ["0.1", "0.02"], "Inner step sizes.")
  _STEPS = flags.DEFINE_list(
    "inner_steps", ["64", "320"], "Inner steps, one per --inner_lr."
  )
  _CG = flags.DEFINE_list("cg_steps", ["0", "5", "20"], "CG steps to compare.")
  _EPISODES = flags.DEFINE_integer("episodes", 4, "Meta-training episodes.")


def _flat(tree) -> jax.Array:
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def _cosine(a, b) -> float:
  return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def diagnose(
  support_loss,
  query_loss,
  theta,
  *,
  lam: float,
  inner_lr: float,
  inner_steps: int,
  cg_steps: Sequence[int],
) -> Dict[str, float]:
  """One task's measures (the module docstring) at one step size and count.

  Args:
    support_loss: `params -> scalar`, the task's support loss.
    query_loss: `params -> scalar`, its query loss.
    theta: the meta-parameters.
    lam: the proximal strength.
    inner_lr: the inner gradient descent's step.
    inner_steps: its number of steps.
    cg_steps: the CG step counts whose implicit gradients are compared.

  Returns:
    {"grad_norm_theta", "grad_norm_phi", "loss_theta", "loss_phi",
    "cos_cg<k>" for each k}.
  """

  def proximal(t):
    def loss(phi, _):
      gap = jax.tree.map(jnp.subtract, phi, t)
      return support_loss(phi) + 0.5 * lam * optax.tree_utils.tree_norm(
        gap, squared=True
      )

    return loss

  def inner(t):
    return optimize(
      optax.sgd(inner_lr), proximal(t), t, steps=inner_steps
    ).params

  phi = inner(theta)
  out = {
    "grad_norm_theta": float(
      jnp.linalg.norm(_flat(jax.grad(proximal(theta))(theta, None)))
    ),
    "grad_norm_phi": float(
      jnp.linalg.norm(_flat(jax.grad(proximal(theta))(phi, None)))
    ),
    "loss_theta": float(support_loss(theta)),
    "loss_phi": float(support_loss(phi)),
  }
  unrolled = _flat(jax.grad(lambda t: query_loss(inner(t)))(theta))
  for k in cg_steps:
    solve = implicit_solution(
      lambda p, _: support_loss(p),
      lam=lam,
      inner_opt=optax.sgd(inner_lr),
      inner_steps=inner_steps,
      cg_steps=k,
    )
    implicit = _flat(
      jax.grad(lambda t, solve=solve: query_loss(solve(t, None)))(theta)
    )
    out[f"cos_cg{k}"] = _cosine(implicit, unrolled)
  return out


def _setup():
  """(config, meta-parameters) of the run, or of a fresh 5w1s init."""
  if _WORKDIR.value:
    run = runs.load_run(_WORKDIR.value)
    return run.config, run.meta_params
  config = imaml_omniglot.get_config("5w1s")
  config.model_kwargs.filters = _FILTERS.value
  return config, None


def main(argv):
  del argv
  config, theta = _setup()
  source = from_config.build_sources(config)["train"]
  model = from_config.build_model(config, config.ways)
  learner = from_config.build_learner(config, num_classes=config.ways)
  loss_fn, _, _ = losses.for_task("classification")
  lam = float(config.learner_kwargs.get("lam") or 2.0)
  cg = [int(k) for k in _CG.value]
  rows = []
  for lr, steps in zip(_LR.value, _STEPS.value, strict=True):
    per_episode = []
    for e in range(_EPISODES.value):
      batch = source.sample_batch(np.random.default_rng(e), 1)
      ep = jax.tree.map(lambda a: a[0], batch)
      if theta is None:
        theta = learner.init(jax.random.PRNGKey(config.seed), ep)
      sx, qx = to_float(ep.support_x), to_float(ep.query_x)

      def apply(p, x):
        return model.apply({"params": p}, x)

      per_episode.append(
        diagnose(
          lambda p, sx=sx, y=ep.support_y: loss_fn(apply(p, sx), y),
          lambda p, qx=qx, y=ep.query_y: loss_fn(apply(p, qx), y),
          theta,
          lam=lam,
          inner_lr=float(lr),
          inner_steps=int(steps),
          cg_steps=cg,
        )
      )
    mean = {k: np.mean([d[k] for d in per_episode]) for k in per_episode[0]}
    rows.append((lr, steps, mean))
  header = "| inner lr | steps | prox. grad norm, theta -> phi | "
  header += "support loss, theta -> phi | "
  header += " | ".join(f"cos, {k} CG steps" for k in cg) + " |"
  print(header)
  print("| " + " | ".join(["---"] * (4 + len(cg))) + " |")
  for lr, steps, m in rows:
    cells = [
      lr,
      steps,
      f"{m['grad_norm_theta']:.3f} -> {m['grad_norm_phi']:.3f}",
      f"{m['loss_theta']:.3f} -> {m['loss_phi']:.3f}",
    ] + [f"{m[f'cos_cg{k}']:.3f}" for k in cg]
    print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
