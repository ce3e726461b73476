"""metajax: functional meta-learning and few-shot learning in JAX.

A learner is a `Learner` of pure functions (init, adapt, predict, loss); one
trainer (`meta_train`) and one evaluation (`meta_test`) serve every learner.

Example:
  import metajax, optax
  learner = metajax.maml(metajax.models.MLP(1), inner_lr=0.01, task="regression")
  tasks = metajax.SinusoidSampler(shots=10, queries=10)
  state = metajax.meta_train(learner, tasks, outer_opt=optax.adam(1e-3),
                             num_steps=1000, meta_batch_size=25)
  result = metajax.meta_test(learner, state.meta_params, tasks, episodes=600)
  print(result.mean, result.ci95)
"""

from metajax import inner
from metajax import learned_optimizers
from metajax import models
from metajax import parallel
from metajax.data.episodes import ClassBatchSampler
from metajax.data.episodes import EpisodeSampler
from metajax.data.episodes import prefetch_to_device
from metajax.data.episodes import step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.data.sources import ClassImages
from metajax.evaluate import EvalResult
from metajax.evaluate import confidence_interval
from metajax.evaluate import evaluate as meta_test
from metajax.inner import learned_sgd
from metajax.learners.baseline import baseline
from metajax.learners.baseline import baseline_pp
from metajax.learners.maml import anil
from metajax.learners.maml import head_only
from metajax.learners.maml import maml
from metajax.learners.maml import meta_sgd
from metajax.learners.mann import accuracy_by_instance
from metajax.learners.mann import mann
from metajax.learners.matching import matching_net
from metajax.learners.meta_lstm import meta_learner_lstm
from metajax.learners.protonet import protonet
from metajax.learners.reptile import carry_outer_opt, reptile
from metajax.learners.snail import snail
from metajax.memory import StepMemoryError
from metajax.runs import Run
from metajax.runs import freeze_embedding
from metajax.runs import load_run
from metajax.runs import predict
from metajax.runs import train_and_evaluate
from metajax.step import TrainState
from metajax.step import init_train_state
from metajax.step import make_meta_step
from metajax.train import NonFiniteError
from metajax.train import meta_train
from metajax.types import Episode
from metajax.types import Learner

__version__ = "0.1.0"

__all__ = (
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
    "accuracy_by_instance",
    "confidence_interval",
    "anil",
    "baseline",
    "baseline_pp",
    "carry_outer_opt",
    "freeze_embedding",
    "head_only",
    "init_train_state",
    "inner",
    "learned_optimizers",
    "learned_sgd",
    "load_run",
    "make_meta_step",
    "maml",
    "mann",
    "matching_net",
    "meta_learner_lstm",
    "meta_sgd",
    "meta_test",
    "meta_train",
    "models",
    "parallel",
    "predict",
    "protonet",
    "prefetch_to_device",
    "reptile",
    "snail",
    "step_rng",
    "train_and_evaluate",
)
