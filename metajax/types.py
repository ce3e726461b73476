"""Core types: the `Episode` pytree and the `Learner` of pure functions.

A learner is a value, not a class hierarchy (see DESIGN.md):

    init(key, example_episode) -> meta_params
    adapt(meta_params, support, key) -> task_state
    predict(meta_params, task_state, query_x) -> outputs
    loss(outputs, targets) -> scalar

`support` is a `(support_x, support_y)` tuple of one task. All four functions
act on ONE task; the trainer vmaps them over the task axis of a meta-batch.
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax

Array = Any  # jax.Array or np.ndarray
PRNGKey = jax.Array
Params = Any  # a pytree
TaskState = Any  # a pytree
Support = Tuple[Array, Array]  # (support_x, support_y)


class Episode(NamedTuple):
  """One few-shot task, or a meta-batch of them with a leading task axis.

  Classification: `support_x` is [N*K, H, W, C] (uint8 on the host),
  `support_y` is [N*K] int32 in 0..N-1; queries likewise with N*Q rows.
  Regression: `*_x` is [K, d_in] float32, `*_y` is [K, d_out] float32.
  A meta-batch adds a leading task axis T to every field.

  Attributes:
    support_x: the support inputs.
    support_y: the support labels or targets.
    query_x: the query inputs.
    query_y: the query labels or targets.
  """

  support_x: Array
  support_y: Array
  query_x: Array
  query_y: Array

  @property
  def support(self) -> Support:
    """`(support_x, support_y)`, what `Learner.adapt` takes."""
    return (self.support_x, self.support_y)


InitFn = Callable[[PRNGKey, Episode], Params]
AdaptFn = Callable[[Params, Support, PRNGKey], TaskState]
PredictFn = Callable[[Params, TaskState, Array], Array]
LossFn = Callable[[Array, Array], Array]
MetricFn = Callable[[Array, Array], Array]
# (meta_params, episode, key) -> (loss, metric): a training objective of one task
# that is not "query loss after adapt" (e.g. MAML++'s multi-step loss).
TaskLossFn = Callable[[Params, Episode, PRNGKey], Tuple[Array, Array]]
# (meta_params, episode, key) -> (outer gradient, (loss, metric)): a task's
# contribution to the outer update that is not a gradient of a loss (Reptile).
OuterGradFn = Callable[
  [Params, Episode, PRNGKey], Tuple[Params, Tuple[Array, Array]]
]


class Learner(NamedTuple):
  """A few-shot learner as four pure functions over one task.

  Attributes:
    init: (key, example_episode) -> meta_params.
    adapt: (meta_params, (support_x, support_y), key) -> task_state.
    predict: (meta_params, task_state, query_x) -> outputs.
    loss: (outputs, targets) -> scalar mean loss.
    metric: (outputs, targets) -> scalar evaluation metric (accuracy for
      classification, MSE for regression).
    metric_name: "accuracy" or "mse".
    task_loss: optional training objective of one task, used by the trainer
      instead of `loss(predict(adapt(support)), query_y)`; evaluation always
      uses adapt and predict.
    outer_grad: optional per-task outer "gradient" used by the trainer instead
      of differentiating the task loss (Reptile's theta - adapted).
    wrap_outer_opt: optional `outer_opt -> outer_opt` for meta-parameters
      that the outer optimizer must treat in the learner's own way (Reptile's
      carried inner statistics, set rather than stepped); applied by the
      step programs (`metajax.step.outer_optimizer`).
    warmup: optional (steps, learner): meta-train that learner, over the
      same meta-parameters, for the first `steps` meta-steps (MAML++'s
      first-order phase); applied by `metajax.runs.train_and_evaluate`.
    train_on: what the learner meta-trains on: "episodes" (N-way K-shot
      tasks), or "class_batches": mini-batches over all meta-train classes
      with global labels in the query field (`ClassBatchSampler`; the
      Baselines' pre-training).
  """

  init: InitFn
  adapt: AdaptFn
  predict: PredictFn
  loss: LossFn
  metric: MetricFn
  metric_name: str
  task_loss: Optional[TaskLossFn] = None
  outer_grad: Optional[OuterGradFn] = None
  wrap_outer_opt: Optional[Callable[[Any], Any]] = None
  warmup: Optional[Tuple[int, "Learner"]] = None
  train_on: str = "episodes"


TRAIN_ON = ("episodes", "class_batches")
