"""metajax: functional meta-learning and few-shot learning in JAX.

A learner is a `Learner` of pure functions (init, adapt, predict, loss); one
trainer (`meta_train`) and one evaluation (`meta_test`) serve every learner.

Example:
  MAML on sinusoid regression, meta-trained and meta-tested::

    import metajax, optax
    learner = metajax.maml(metajax.models.MLP(1), inner_lr=0.01,
                           task="regression")
    tasks = metajax.SinusoidSampler(shots=10, queries=10)
    state = metajax.meta_train(learner, tasks, outer_opt=optax.adam(1e-3),
                               num_steps=1000, meta_batch_size=25)
    result = metajax.meta_test(learner, state.meta_params, tasks,
                               episodes=600)
    print(result.mean, result.ci95)

The finished runs of the experiment binaries (`load_run`, `predict`, `Run`)
and `CheckpointError` are imported on first use, so that `import metajax`
does not import orbax or ml_collections.
"""

import importlib

from metajax import inner
from metajax import learned_optimizers
from metajax import learners
from metajax import models
from metajax import parallel
from metajax.data.episodes import ClassBatchSampler
from metajax.data.episodes import EpisodeSampler
from metajax.data.sinusoid import SinusoidSampler
from metajax.data.sources import ClassImages
from metajax.evaluate import EvalResult
from metajax.evaluate import confidence_interval
from metajax.evaluate import evaluate as meta_test
from metajax.learners import anil
from metajax.learners import baseline
from metajax.learners import baseline_pp
from metajax.learners import fomaml
from metajax.learners import freeze_embedding
from metajax.learners import imaml
from metajax.learners import lrd2
from metajax.learners import maml
from metajax.learners import mann
from metajax.learners import matching_net
from metajax.learners import meta_curvature
from metajax.learners import meta_learner_lstm
from metajax.learners import meta_sgd
from metajax.learners import metaoptnet
from metajax.learners import protomaml
from metajax.learners import protonet
from metajax.learners import r2d2
from metajax.learners import reptile
from metajax.learners import snail
from metajax.memory import StepMemoryError
from metajax.step import TrainState
from metajax.train import NonFiniteError
from metajax.train import meta_train
from metajax.types import Episode
from metajax.types import Learner

__version__ = "0.1.0"

# name -> module, imported when the name is first used (PEP 562).
_LAZY = {
  "CheckpointError": "metajax.checkpoint",
  "Run": "metajax.runs",
  "load_run": "metajax.runs",
  "predict": "metajax.runs",
}


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'metajax' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_LAZY))


__all__ = (
  "CheckpointError",
  "ClassBatchSampler",
  "ClassImages",
  "Episode",
  "EpisodeSampler",
  "EvalResult",
  "Learner",
  "NonFiniteError",
  "Run",
  "SinusoidSampler",
  "StepMemoryError",
  "TrainState",
  "anil",
  "baseline",
  "baseline_pp",
  "confidence_interval",
  "fomaml",
  "freeze_embedding",
  "imaml",
  "inner",
  "learned_optimizers",
  "learners",
  "load_run",
  "lrd2",
  "maml",
  "mann",
  "matching_net",
  "meta_curvature",
  "meta_learner_lstm",
  "meta_sgd",
  "meta_test",
  "meta_train",
  "metaoptnet",
  "models",
  "parallel",
  "predict",
  "protomaml",
  "protonet",
  "r2d2",
  "reptile",
  "snail",
)
