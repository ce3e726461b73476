"""The gradient-based family on optax inner optimizers.

MAML and first-order MAML (Finn et al. 2017), Meta-SGD (Li et al. 2017),
ANIL (Raghu et al. 2020) and MAML++ options (Antoniou et al. 2019) are one
learner, `maml`, with options; `meta_sgd` and `anil` are short names for the
usual settings. Reptile (Nichol et al. 2018) is in `reptile.py`.
"""

from typing import Any, Callable, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metajax import checks
from metajax import losses
from metajax.inner.learned_sgd import learned_sgd
from metajax.inner.loop import optimize
from metajax.learners.embedding import to_float
from metajax.types import Episode, Learner, Params

InnerOptFn = Callable[[Any], optax.GradientTransformation]
TrainableFn = Callable[[Params], Any]  # params -> pytree of bools (True: adapt)


def head_only(head: str = "head") -> TrainableFn:
  """A `trainable` function adapting only the top-level module `head` (ANIL)."""

  def trainable(params):
    if head not in params:
      raise ValueError(
        f"No top-level module {head!r} in the params; found {sorted(params)}."
      )
    return {
      k: jax.tree.map(lambda _, k=k: k == head, v) for k, v in params.items()
    }

  return trainable


def maml(
  model: nn.Module,
  *,
  inner_lr: float = 0.4,
  inner_steps: int = 1,
  first_order: bool = False,
  inner_opt: Optional[optax.GradientTransformation] = None,
  inner_opt_fn: Optional[InnerOptFn] = None,
  inner_hparams: Any = None,
  trainable: Optional[TrainableFn] = None,
  multi_step_loss: Union[bool, Sequence[float], None] = None,
  lslr: bool = False,
  lslr_steps: Optional[int] = None,
  first_order_steps: int = 0,
  task: str = "classification",
  remat: bool = False,
) -> Learner:
  """Model-Agnostic Meta-Learning, and the family built on its inner loop.

  `adapt` runs `inner_steps` updates of an optax transformation on the support
  loss under `jax.lax.scan` (`metajax.inner.optimize`); the meta-gradient
  flows through every step (second order) unless `first_order=True`, which
  stops the gradient through the inner gradients (FOMAML).

  The inner optimizer is one of:
    * `inner_opt`: any fixed optax transformation (default: SGD with step
      `inner_lr`). If it accepts extra args it receives `value=` the loss.
    * `inner_opt_fn(hparams)` with `inner_hparams`: an optax transformation
      built from hyperparameters that are META-PARAMETERS, learned with the
      initialization and saved in checkpoints. Then meta_params is
      `{"params": weights, "inner": hparams}`. E.g. Meta-SGD is
      `inner_opt_fn=learned_sgd` with per-coordinate rates, and a learned
      Adam step is `inner_opt_fn=lambda h: optax.adam(h["lr"])` with
      `inner_hparams={"lr": 1e-3}`.

  Args:
    model: a flax module mapping float inputs [B, ...] to outputs [B, ...].
    inner_lr: step size of the default inner SGD.
    inner_steps: number of inner updates (>= 0).
    first_order: drop second-order terms (FOMAML).
    inner_opt: a fixed inner optimizer.
    inner_opt_fn: hparams -> inner optimizer, for learned hyperparameters.
    inner_hparams: their initial value: a pytree, or a function of the
      model's parameters returning one (e.g. rates shaped like the params).
    trainable: params -> pytree of bools; only True leaves adapt in the inner
      loop (the others get zero updates through `optax.multi_transform`, and
      XLA drops their unused inner gradients). `head_only()` gives ANIL.
    multi_step_loss: MAML++'s multi-step loss: `inner_steps` weights (True:
      uniform ones, 1 / inner_steps; False or None: off); the training
      objective becomes sum_t w_t * query loss after inner step t.
    lslr: MAML++'s learned per-layer per-step inner rates: SGD whose rate
      for each parameter leaf and inner step is a meta-parameter, starting at
      `inner_lr` (`metajax.inner.learned_sgd`).
    lslr_steps: the steps that have rates of their own (default
      `inner_steps`); later steps reuse the last one, so a test-time learner
      may take more steps than it was trained with.
    first_order_steps: MAML++'s first-order warm-up: the first this many
      meta-steps train the first-order learner (`Learner.warmup`), the rest
      second order.
    task: "classification" (cross-entropy, accuracy) or "regression" (MSE).
    remat: rematerialize each inner step in the backward pass
      (`jax.checkpoint`), trading compute for memory with many inner steps.

  Returns:
    A `Learner` whose task state is the adapted weights.

  Example:
    Adapting to one task and predicting its queries::

      learner = maml(Conv4(5), inner_lr=0.4, inner_steps=1)
      params = learner.init(key, episode)
      adapted = learner.adapt(params, episode.support, key)
      logits = learner.predict(params, adapted, episode.query_x)

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks", ICML 2017.
    Antoniou, Edwards & Storkey, "How to train your MAML", ICLR 2019.
  """
  inner_lr = checks.positive("inner_lr", inner_lr)
  inner_steps = checks.integer("inner_steps", inner_steps, minimum=0)
  first_order = checks.boolean("first_order", first_order)
  first_order_steps = checks.integer(
    "first_order_steps", first_order_steps, minimum=0
  )
  if first_order_steps and first_order:
    raise ValueError(
      "first_order_steps switches a second-order learner to "
      "second order after that many meta-steps; with "
      "first_order=True it is first order throughout."
    )
  if checks.boolean("lslr", lslr):
    if inner_opt is not None or inner_opt_fn is not None:
      raise ValueError(
        "lslr learns the rates of the inner SGD; it takes no "
        "inner_opt or inner_opt_fn (the Meta-Learner LSTM and "
        "Meta-SGD learn their own steps)."
      )
    inner_opt_fn, inner_hparams = _lslr(inner_lr, inner_steps, lslr_steps)
  kwargs = dict(
    inner_lr=inner_lr,
    inner_steps=inner_steps,
    inner_opt=inner_opt,
    inner_opt_fn=inner_opt_fn,
    inner_hparams=inner_hparams,
    trainable=trainable,
    multi_step_loss=_step_weights(multi_step_loss, inner_steps),
    task=task,
    remat=checks.boolean("remat", remat),
  )
  net = (
    lambda key, x: model.init(key, x)["params"],
    lambda params, x: model.apply({"params": params}, x),
  )
  learner = _maml(*net, first_order=first_order, **kwargs)
  if first_order_steps:
    learner = learner._replace(
      warmup=(first_order_steps, _maml(*net, first_order=True, **kwargs))
    )
  return learner


def _lslr(inner_lr: float, inner_steps: int, lslr_steps: Optional[int]):
  """(inner_opt_fn, inner_hparams) of MAML++'s per-layer per-step rates."""
  if inner_steps < 1:
    raise ValueError(
      "lslr learns one inner rate per inner step; it needs "
      f"inner_steps >= 1, got {inner_steps}."
    )
  rows = checks.integer(
    "lslr_steps", inner_steps if lslr_steps is None else lslr_steps, minimum=1
  )
  # Step t uses row min(t, rows - 1).
  index = jnp.minimum(jnp.arange(inner_steps), rows - 1)
  opt_fn = lambda rates: learned_sgd(
    jax.tree.map(lambda r: jnp.asarray(r)[index], rates), per_step=True
  )
  return opt_fn, per_layer_per_step_rates(inner_lr, rows)


def _step_weights(multi_step_loss, inner_steps: int):
  """MAML++'s multi-step loss weights, or None (off)."""
  if multi_step_loss is None or multi_step_loss is False:
    return None
  if multi_step_loss is True:
    return (1.0 / inner_steps,) * inner_steps if inner_steps else None
  weights = tuple(float(w) for w in multi_step_loss)
  if len(weights) != inner_steps or inner_steps == 0:
    raise ValueError(
      f"multi_step_loss needs one weight per inner step "
      f"({inner_steps}), got {len(weights)}."
    )
  return weights


def _maml(
  init_fn: Callable[[Any, Any], Params],
  apply_fn: Callable[[Params, Any], Any],
  *,
  inner_lr: float,
  inner_steps: int,
  first_order: bool,
  inner_opt,
  inner_opt_fn,
  inner_hparams,
  trainable,
  multi_step_loss,
  task: str,
  remat: bool,
  start: Optional[Callable[[Params, Any, Any], Params]] = None,
) -> Learner:
  """`maml`'s learner from checked options (no warm-up), over a network given
  as `init_fn(key, x) -> weights` and `apply_fn(weights, x) -> outputs`.

  `start(weights, support_x, support_y)`, if given, makes each task's initial
  weights from the meta-learned ones and the support set (ProtoMAML's head);
  the inner loop, `trainable` and the task state are over what it returns.
  """
  learned = inner_opt_fn is not None
  opt_fn = _inner_opt_fn(inner_lr, inner_opt, inner_opt_fn, inner_hparams)
  loss_fn, metric_fn, metric_name = losses.for_task(task)

  def split(meta_params):
    if learned:
      return meta_params["params"], meta_params["inner"]
    return meta_params, None

  def init(key, episode: Episode):
    weights = init_fn(key, to_float(episode.support_x))
    if not learned:
      return weights
    hparams = (
      inner_hparams(weights) if callable(inner_hparams) else inner_hparams
    )
    return {"params": weights, "inner": jax.tree.map(jnp.asarray, hparams)}

  def inner_loop(meta_params, support, query=None):
    """Adapted weights and, with a query set, its (loss, metric) per step."""
    weights, hparams = split(meta_params)
    support_x, support_y = to_float(support[0]), support[1]
    if start is not None:
      weights = start(weights, support_x, support_y)

    def query_loss(params):
      outputs = apply_fn(params, to_float(query[0]))
      return loss_fn(outputs, query[1]), metric_fn(outputs, query[1])

    result = optimize(
      opt_fn(hparams),
      lambda params, _: loss_fn(apply_fn(params, support_x), support_y),
      weights,
      steps=inner_steps,
      first_order=first_order,
      trainable=None if trainable is None else trainable(weights),
      remat=remat,
      observe=None if query is None else query_loss,
    )
    return result.params, result.per_step

  def adapt(meta_params, support, key):
    del key  # the inner loop is deterministic.
    return inner_loop(meta_params, support)[0]

  def predict(meta_params, task_state, query_x):
    del meta_params  # the adapted weights are the whole predictor.
    return apply_fn(task_state, to_float(query_x))

  task_loss = None
  if multi_step_loss is not None:
    task_loss = _multi_step_task_loss(inner_loop, multi_step_loss)
  return Learner(
    init=init,
    adapt=adapt,
    predict=predict,
    loss=loss_fn,
    metric=metric_fn,
    metric_name=metric_name,
    task_loss=task_loss,
  )


def _inner_opt_fn(inner_lr: float, inner_opt, inner_opt_fn, inner_hparams):
  """hparams -> the inner optimizer: `inner_opt_fn`, or the fixed `inner_opt`
  (default SGD with step `inner_lr`) whatever the hparams (None)."""
  if inner_opt_fn is not None:
    if inner_opt is not None:
      raise ValueError(
        "Pass either inner_opt (fixed) or inner_opt_fn "
        "(learned hyperparameters), not both."
      )
    if inner_hparams is None:
      raise ValueError("inner_opt_fn needs inner_hparams, their initial value.")
    return inner_opt_fn
  fixed = optax.sgd(inner_lr) if inner_opt is None else inner_opt
  return lambda _: fixed


def _multi_step_task_loss(inner_loop, step_weights):
  """MAML++'s multi-step loss: `task_loss` from `_maml`'s `inner_loop` and
  the weights of the query losses after each inner step."""
  weights_t = jnp.asarray(step_weights)

  def multi_step_task_loss(meta_params, episode, key):
    del key
    _, (step_losses, step_metrics) = inner_loop(
      meta_params, episode.support, (episode.query_x, episode.query_y)
    )
    return jnp.sum(weights_t * step_losses), step_metrics[-1]

  return multi_step_task_loss


def meta_sgd(
  model: nn.Module,
  *,
  inner_lr: float = 0.01,
  inner_steps: int = 1,
  first_order: bool = False,
  task: str = "classification",
  remat: bool = False,
  **kwargs,
) -> Learner:
  """Meta-SGD: MAML with a learned step size per parameter coordinate.

  meta_params = {"params": initial weights, "inner": rates shaped like the
  weights, initialized to `inner_lr`}; the inner update is
  weights - rates * grad (`metajax.inner.learned_sgd`).

  References:
    Li, Zhou, Chen & Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot
    Learning", 2017.
  """
  return maml(
    model,
    inner_lr=inner_lr,
    inner_steps=inner_steps,
    first_order=first_order,
    inner_opt_fn=learned_sgd,
    inner_hparams=lambda w: jax.tree.map(
      lambda x: jnp.full_like(x, inner_lr), w
    ),
    task=task,
    remat=remat,
    **kwargs,
  )


def per_layer_per_step_rates(inner_lr: float, inner_steps: int):
  """`inner_hparams` for MAML++'s LSLR: one rate per layer leaf and step."""
  return lambda w: jax.tree.map(
    lambda _: jnp.full((inner_steps,), inner_lr, jnp.float32), w
  )


def anil(
  model: nn.Module,
  *,
  head: str = "head",
  task: str = "classification",
  **kwargs,
) -> Learner:
  """ANIL: MAML whose inner loop adapts only the head (`trainable=head_only`).

  Takes `maml`'s options.

  References:
    Raghu, Raghu, Bengio & Vinyals, "Rapid Learning or Feature Reuse?
    Towards Understanding the Effectiveness of MAML", ICLR 2020.
  """
  return maml(model, trainable=head_only(head), task=task, **kwargs)


def fomaml(
  model: nn.Module, *, task: str = "classification", **kwargs
) -> Learner:
  """First-order MAML: `maml` with `first_order=True`; takes its options.

  References:
    Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation
    of Deep Networks", ICML 2017 (Section 5.2).
  """
  return maml(model, first_order=True, task=task, **kwargs)
