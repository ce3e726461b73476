"""The inner loop: steps of an optax transformation on a loss, under `scan`.

Every learner that optimizes something per task runs it: the MAML family's
adaptation (MAML, FOMAML, Meta-SGD, ANIL, MAML++, the Meta-Learner LSTM),
Reptile's inner steps, the Baselines' head fit and transductive fine-tuning,
and the unrolled trajectories that meta-train learned optimizers.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import optax

Params = Any
# (params, x) -> scalar loss; x is this step's slice of `inputs` (None without).
LossFn = Callable[[Params, Any], jax.Array]


class InnerResult(NamedTuple):
  """What `optimize` returns.

  Attributes:
    params: the parameters after the last step.
    opt_state: the transformation's state after the last step.
    per_step: `observe(params after step t)`, stacked over t; or None.
  """

  params: Params  # the parameters after the last step
  opt_state: Any  # the transformation's state after the last step
  per_step: Any  # observe(params after step t), stacked over t; or None


def optimize(
  tx: optax.GradientTransformation,
  loss_fn: LossFn,
  params: Params,
  *,
  steps: int,
  opt_state: Any = None,
  inputs: Any = None,
  first_order: bool = False,
  trainable: Any = None,
  remat: bool = False,
  observe: Optional[Callable[[Params], Any]] = None,
) -> InnerResult:
  """`steps` updates of `tx` on `loss_fn`, under `jax.lax.scan`.

  Each step takes the loss and its gradient at the current parameters, has
  `tx` turn the gradient into updates (a transformation that accepts extra
  args receives the loss as `value=`, as learned optimizers need) and
  applies them. The whole loop is differentiable: the meta-gradient of the
  MAML family flows through every step.

  Args:
    tx: an `optax.GradientTransformation` or `...ExtraArgs`.
    loss_fn: `(params, x) -> scalar`, with x this step's slice of `inputs`
      (None when `inputs` is None).
    params: the initial parameters.
    steps: number of updates (>= 0; 0 returns `params` unchanged).
    opt_state: the initial state of `tx` (None: `tx.init(params)`); a state
      carried over from an earlier call continues its statistics. With
      `trainable`, it is a state of the masked transformation.
    inputs: a pytree with a leading [steps] axis, scanned over (e.g. the
      indices of each step's mini-batch), or None.
    first_order: stop the gradient through the loss and its gradient, which
      are the optimizer's inputs (FOMAML; the paper's setting for learned
      optimizers). The parameters themselves stay differentiable.
    trainable: a pytree of bools shaped like `params` (or a prefix of it);
      False leaves get zero updates (`optax.multi_transform` with
      `set_to_zero`) and keep their value exactly.
    remat: rematerialize each step in the backward pass (`jax.checkpoint`),
      trading compute for memory over many steps.
    observe: `params -> pytree`, evaluated after each update and stacked over
      steps (e.g. MAML++'s per-step query loss), or None.

  Returns:
    `InnerResult(params, opt_state, per_step)`.
  """
  if trainable is not None:
    labels = jax.tree.map(lambda m: "adapt" if m else "frozen", trainable)
    tx = optax.multi_transform(
      {"adapt": tx, "frozen": optax.set_to_zero()}, labels
    )
  tx = optax.with_extra_args_support(tx)
  if opt_state is None:
    opt_state = tx.init(params)

  def step(carry, x):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, x)
    if first_order:  # no gradient through the optimizer's inputs
      grads, loss = jax.lax.stop_gradient((grads, loss))
    updates, opt_state = tx.update(grads, opt_state, params, value=loss)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), None if observe is None else observe(params)

  if remat:
    step = jax.checkpoint(step)
  (params, opt_state), per_step = jax.lax.scan(
    step, (params, opt_state), inputs, length=steps
  )
  return InnerResult(params, opt_state, per_step)
