"""MAML against closed forms, and the learner contract."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax import models
from metajax.learners.maml import maml, meta_sgd
from metajax.learners.reptile import reptile
from metajax.types import Episode


class Scalar(nn.Module):
  """f(x) = t * x with one scalar parameter t."""

  @nn.compact
  def __call__(self, x):
    t = self.param("t", lambda key: jnp.asarray(1.5))
    return t * x


def quadratic_episode(a):
  # With targets 0 and a single input sqrt(a), MSE = (t sqrt(a))^2 = a t^2,
  # i.e. L(t) = A t^2 / 2 with A = 2a.
  x = jnp.full((1, 1), jnp.sqrt(a))
  zero = jnp.zeros((1, 1))
  return Episode(x, zero, x, zero)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_meta_gradient_closed_form(first_order, inner_steps):
  a, alpha, t = 0.7, 0.3, 1.5
  big_a = 2 * a  # L(t) = big_a t^2 / 2
  learner = maml(
    Scalar(),
    inner_lr=alpha,
    inner_steps=inner_steps,
    first_order=first_order,
    task="regression",
  )
  ep = quadratic_episode(a)
  params = learner.init(jax.random.key(0), ep)

  def query_loss(p):
    adapted = learner.adapt(p, ep.support, jax.random.key(1))
    return learner.loss(learner.predict(p, adapted, ep.query_x), ep.query_y)

  adapted = learner.adapt(params, ep.support, jax.random.key(1))
  shrink = 1 - alpha * big_a
  np.testing.assert_allclose(adapted["t"], t * shrink**inner_steps, rtol=1e-6)
  grad = jax.grad(query_loss)(params)["t"]
  # Second order: d/dt [A (t s^k)^2 / 2] = A t s^(2k); first order drops the
  # s^k from differentiating through the inner steps: A t s^k.
  expected = big_a * t * shrink ** (inner_steps * (1 if first_order else 2))
  np.testing.assert_allclose(grad, expected, rtol=1e-5)


def test_zero_inner_steps_is_identity():
  learner = maml(Scalar(), inner_steps=0, task="regression")
  ep = quadratic_episode(1.0)
  params = learner.init(jax.random.key(0), ep)
  chex.assert_trees_all_equal(learner.adapt(params, ep.support, None), params)


def test_any_optax_inner_optimizer_is_differentiable():
  # Adam's first step moves each coordinate by about -lr * sign(grad).
  learner = maml(
    Scalar(), inner_opt=optax.adam(0.1), inner_steps=1, task="regression"
  )
  ep = quadratic_episode(1.0)
  params = learner.init(jax.random.key(0), ep)
  adapted = learner.adapt(params, ep.support, None)
  np.testing.assert_allclose(adapted["t"], 1.5 - 0.1, rtol=1e-4)
  g = jax.grad(
    lambda p: learner.loss(
      learner.predict(p, learner.adapt(p, ep.support, None), ep.query_x),
      ep.query_y,
    )
  )(params)
  assert np.isfinite(g["t"])


@pytest.mark.parametrize("remat", [False, True])
def test_contract_conv4(remat):
  ways, shots, queries = 3, 2, 2
  learner = maml(
    models.Conv4(ways, filters=4), inner_lr=0.1, inner_steps=2, remat=remat
  )
  rng = np.random.default_rng(0)
  ep = Episode(
    rng.integers(0, 256, (ways * shots, 12, 12, 1), np.uint8),
    np.repeat(np.arange(ways, dtype=np.int32), shots),
    rng.integers(0, 256, (ways * queries, 12, 12, 1), np.uint8),
    np.repeat(np.arange(ways, dtype=np.int32), queries),
  )
  params = learner.init(jax.random.key(0), ep)
  adapted = learner.adapt(params, ep.support, jax.random.key(1))
  chex.assert_trees_all_equal_shapes_and_dtypes(adapted, params)
  chex.assert_tree_all_finite(adapted)
  logits = learner.predict(params, adapted, ep.query_x)
  chex.assert_shape(logits, (ways * queries, ways))
  # Adapting lowers the support loss.
  support_loss = lambda p: learner.loss(
    learner.predict(p, p, ep.support_x), ep.support_y
  )
  assert support_loss(adapted) < support_loss(params)


def test_remat_gives_the_same_gradients():
  ways = 2
  rng = np.random.default_rng(0)
  ep = Episode(
    rng.random((4, 10, 10, 1), np.float32),
    np.array([0, 0, 1, 1]),
    rng.random((4, 10, 10, 1), np.float32),
    np.array([0, 1, 0, 1]),
  )
  grads = []
  for remat in (False, True):
    learner = maml(
      models.Conv4(ways, filters=4), inner_lr=0.1, inner_steps=3, remat=remat
    )
    params = learner.init(jax.random.key(0), ep)
    grads.append(
      jax.grad(
        lambda p, learner=learner: learner.loss(
          learner.predict(p, learner.adapt(p, ep.support, None), ep.query_x),
          ep.query_y,
        )
      )(params)
    )
  chex.assert_trees_all_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(inner_steps=-1), "inner_steps"),
    (dict(inner_lr=0.0), "inner_lr"),
    (
      dict(inner_lr=float("inf")),
      r"^inner_lr must be a finite number > 0, "
      r"got inf\.$",
    ),
    (dict(inner_lr=float("nan")), "inner_lr must be a finite number > 0"),
    (dict(first_order=1), r"first_order must be a bool \(True or False\)"),
    (dict(task="ranking"), "Unknown task 'ranking'"),
  ],
)
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    maml(Scalar(), **kwargs)


@pytest.mark.parametrize("factory", [meta_sgd, reptile])
@pytest.mark.parametrize("inner_lr", [float("inf"), float("nan"), -1.0])
def test_family_factories_refuse_bad_inner_rates(factory, inner_lr):
  with pytest.raises(ValueError, match="inner_lr must be a finite number > 0"):
    factory(Scalar(), inner_lr=inner_lr)
