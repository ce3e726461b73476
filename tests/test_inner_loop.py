"""metajax.inner.optimize (the one inner loop) and carried_adam."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax.inner import CarriedAdamState, carried_adam, optimize
from metajax.learners.reptile import CARRIED, reptile
from metajax.models import MLP
from metajax.types import Episode

A, ALPHA, T0 = 2.0, 0.1, 1.5


def quadratic(t, _=None):  # L(t) = a t^2 / 2
  return A * t**2 / 2


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_sgd_on_a_quadratic_has_the_closed_form(steps):
  result = optimize(optax.sgd(ALPHA), quadratic, jnp.asarray(T0), steps=steps)
  np.testing.assert_allclose(
    result.params, T0 * (1 - ALPHA * A) ** steps, rtol=1e-6
  )
  assert result.per_step is None


@pytest.mark.parametrize(
  "first_order,factor",
  [
    (False, (1 - ALPHA * A) ** 2),  # MAML: through the inner step
    (True, 1 - ALPHA * A),  # FOMAML: the inner gradient is a constant
  ],
)
def test_meta_gradient_has_the_closed_form(first_order, factor):
  def meta_loss(t0):
    adapted = optimize(
      optax.sgd(ALPHA), quadratic, t0, steps=1, first_order=first_order
    ).params
    return quadratic(adapted)

  np.testing.assert_allclose(
    jax.grad(meta_loss)(jnp.asarray(T0)), A * T0 * factor, rtol=1e-6
  )


def test_frozen_leaves_keep_their_value_exactly():
  params = {"body": jnp.asarray([0.3, -1.7]), "head": jnp.asarray([2.0, 0.5])}
  loss = lambda p, _: jnp.sum(p["body"] ** 2 * p["head"]) + jnp.sum(p["head"])
  trainable = {"body": False, "head": True}
  result = optimize(optax.adam(0.1), loss, params, steps=3, trainable=trainable)
  np.testing.assert_array_equal(result.params["body"], params["body"])
  assert not np.allclose(result.params["head"], params["head"])
  # The adapting leaves move as if the frozen ones were constants.
  head_only = optimize(
    optax.adam(0.1),
    lambda h, _: loss({**params, "head": h}, None),
    params["head"],
    steps=3,
  )
  np.testing.assert_allclose(result.params["head"], head_only.params, rtol=1e-6)


def test_remat_gives_the_same_values_and_gradients():
  w0 = jnp.asarray([[0.5, -0.2], [0.1, 0.9]])
  x = jnp.asarray([1.0, 2.0])

  def meta_loss(w, remat):
    loss = lambda w, _: jnp.sum(jnp.tanh(w @ x) ** 2)
    result = optimize(
      optax.sgd(0.3),
      loss,
      w,
      steps=4,
      remat=remat,
      observe=lambda w: loss(w, None),
    )
    return jnp.sum(result.params) + jnp.sum(result.per_step)

  values = [jax.value_and_grad(meta_loss)(w0, remat) for remat in (False, True)]
  chex.assert_trees_all_close(values[0], values[1], rtol=1e-6)


def test_per_step_inputs_and_observations_come_in_order():
  # With SGD of rate 1 on (p - x)^2 / 2, each step lands on its input.
  inputs = jnp.asarray([3.0, -1.0, 4.0])
  result = optimize(
    optax.sgd(1.0),
    lambda p, x: (p - x) ** 2 / 2,
    jnp.asarray(0.0),
    steps=3,
    inputs=inputs,
    observe=lambda p: {"p": p},
  )
  np.testing.assert_allclose(result.per_step["p"], inputs)
  np.testing.assert_allclose(result.params, inputs[-1])


def test_transformations_with_extra_args_get_the_loss_as_value():
  def init(params):
    del params
    return jnp.zeros([])

  def update(updates, state, params=None, *, value=None, **extra):
    del state, params, extra
    return jax.tree.map(lambda g: -ALPHA * g, updates), value

  tx = optax.GradientTransformationExtraArgs(init, update)
  result = optimize(tx, quadratic, jnp.asarray(T0), steps=2)
  # The state is the loss before the last step.
  np.testing.assert_allclose(
    result.opt_state, quadratic(T0 * (1 - ALPHA * A)), rtol=1e-6
  )


def test_a_returned_state_continues_where_it_stopped():
  params = jnp.asarray([1.0, -2.0])
  loss = lambda p, _: jnp.sum(jnp.cos(p) + p**2)
  once = optimize(optax.adam(0.1), loss, params, steps=4)
  half = optimize(optax.adam(0.1), loss, params, steps=2)
  twice = optimize(
    optax.adam(0.1), loss, half.params, steps=2, opt_state=half.opt_state
  )
  chex.assert_trees_all_close(twice.params, once.params, rtol=1e-6)
  chex.assert_trees_all_close(twice.opt_state, once.opt_state, rtol=1e-6)


def test_traced_once_over_two_calls():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params):
    return optimize(optax.sgd(ALPHA), quadratic, params, steps=3).params

  run(jnp.asarray(1.0))
  run(jnp.asarray(2.0))


def test_carried_adam_from_fresh_statistics_is_adam_without_momentum():
  params = {"w": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray(0.3)}
  loss = lambda p, _: jnp.sum(jnp.sin(p["w"]) * p["b"] + p["w"] ** 2)
  ours = optimize(carried_adam(0.05, b2=0.9), loss, params, steps=5)
  adam = optimize(optax.adam(0.05, b1=0.0, b2=0.9), loss, params, steps=5)
  chex.assert_trees_all_close(ours.params, adam.params, rtol=1e-5)
  assert isinstance(ours.opt_state, CarriedAdamState)
  np.testing.assert_allclose(ours.opt_state.debias, 1 - 0.9**5, rtol=1e-6)


def test_carried_adam_carries_its_statistics_over_calls():
  """Two calls of two steps from a carried state, against the formula."""
  lr, b2 = 0.1, 0.8
  tx = carried_adam(lr, b2)
  t, state = jnp.asarray(T0), tx.init(jnp.asarray(T0))
  expected_t, nu, debias = T0, 0.0, 0.0
  for _ in range(2):
    result = optimize(tx, quadratic, t, steps=2, opt_state=state)
    t, state = result.params, result.opt_state
    for _ in range(2):
      g = A * expected_t
      nu = b2 * nu + (1 - b2) * g * g
      debias = b2 * debias + (1 - b2)
      expected_t -= lr * g / (np.sqrt(nu / debias) + 1e-8)
    np.testing.assert_allclose(t, expected_t, rtol=1e-5)
    np.testing.assert_allclose(state.nu, nu, rtol=1e-5)
    np.testing.assert_allclose(state.debias, debias, rtol=1e-6)
  # From the carried state a step is not a fresh Adam's first step
  # (lr * sign(g)).
  fresh = optimize(tx, quadratic, t, steps=1).params
  carried = optimize(tx, quadratic, t, steps=1, opt_state=state).params
  np.testing.assert_allclose(fresh, t - lr * np.sign(t), rtol=1e-5)
  assert abs(carried - fresh) > 1e-3


def test_reptile_carried_state_keeps_its_checkpoint_layout():
  """meta_params of a carrying Reptile stay {"params", "inner_state": {"nu",
  "debias"}}, so checkpoints of earlier runs restore."""
  x = jnp.ones((4, 1), jnp.float32)
  ep = Episode(x, x, x, x)
  learner = reptile(
    MLP(1, hidden=(3,)),
    inner_lr=0.1,
    inner_steps=2,
    carry_inner_state=True,
    task="regression",
  )
  meta = learner.init(jax.random.key(0), ep)
  weights = meta["params"]
  expected = {
    "params": weights,
    CARRIED: {
      "nu": jax.tree.map(jnp.zeros_like, weights),
      "debias": jnp.zeros([], jnp.float32),
    },
  }
  assert CARRIED == "inner_state"
  chex.assert_trees_all_equal_structs(meta, expected)
  chex.assert_trees_all_equal(meta, expected)
  chex.assert_trees_all_equal_dtypes(meta, expected)
  grads, _ = learner.outer_grad(meta, ep, None)
  chex.assert_trees_all_equal_structs(grads, expected)
  np.testing.assert_allclose(
    grads[CARRIED]["debias"], -(1 - 0.999**2), rtol=1e-5
  )
