"""Meta-Curvature: the transform against numpy, MAML at identity factors, and
the outer gradient of the factors against a closed form and finite
differences."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import models
from metajax.inner import apply_meta_curvature
from metajax.inner import init_meta_curvature
from metajax.inner import meta_curvature as mc_transform
from metajax.learners.maml import head_only, maml
from metajax.learners.meta_curvature import meta_curvature
from metajax.models import layers
from metajax.types import Episode
from tests.test_family import check_gradient_by_finite_differences
from tests.test_family import query_loss_fn, tiny_episode


def mode_product(tensor, matrix, axis):
  """The textbook mode-`axis` product: matrix @ each fiber along `axis`."""
  return np.moveaxis(np.tensordot(matrix, tensor, axes=(1, axis)), 0, axis)


def random_factors(rng, shape, vectors="diagonal"):
  """Non-symmetric factors for a leaf of `shape`, far from the identity."""
  m = lambda n: rng.standard_normal((n, n))
  if len(shape) >= 3:
    return {
      "filter": m(int(np.prod(shape[:-2]))),
      "in": m(shape[-2]),
      "out": m(shape[-1]),
    }
  if len(shape) == 2:
    return {"in": m(shape[0]), "out": m(shape[1])}
  if vectors == "full":
    return {"full": m(shape[0])}
  return {"diagonal": rng.standard_normal(shape)}


def test_conv_kernel_transform_against_numpy():
  rng = np.random.default_rng(0)
  shape = (2, 3, 4, 5)  # [kh, kw, C_in, C_out]: flax's kernel layout
  grad = rng.standard_normal(shape)
  f = random_factors(rng, shape)
  got = np.asarray(
    apply_meta_curvature(jnp.asarray(grad, jnp.float32), f), np.float64
  )
  # Mode products, one axis at a time, on G read as [kh * kw, C_in, C_out].
  g = grad.reshape(6, 4, 5)
  expected = mode_product(g, f["filter"], 0)
  expected = mode_product(expected, f["in"], 1)
  expected = mode_product(expected, f["out"], 2)
  np.testing.assert_allclose(got, expected.reshape(shape), rtol=1e-4, atol=1e-4)
  # The Kronecker form: vec(MC(G)) = (M_f kron M_i kron M_o) vec(G), vec in
  # row-major order of [kh * kw, C_in, C_out]; equivalently the paper's
  # column-major vec of G as [C_out, C_in, kh * kw].
  kron = np.kron(f["filter"], np.kron(f["in"], f["out"]))
  np.testing.assert_allclose(
    got.reshape(-1), kron @ grad.reshape(-1), rtol=1e-4, atol=1e-4
  )
  paper_g = g.transpose(2, 1, 0)  # [C_out, C_in, kh * kw]
  paper_mc = got.reshape(6, 4, 5).transpose(2, 1, 0)
  np.testing.assert_allclose(
    paper_mc.reshape(-1, order="F"),
    kron @ paper_g.reshape(-1, order="F"),
    rtol=1e-4,
    atol=1e-4,
  )


def test_dense_and_vector_transforms_against_numpy():
  rng = np.random.default_rng(1)
  grad = rng.standard_normal((4, 3))  # a Dense kernel [in, out]
  f = random_factors(rng, grad.shape)
  got = np.asarray(apply_meta_curvature(jnp.asarray(grad), f))
  expected = f["in"] @ grad @ f["out"].T
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    got.reshape(-1),
    np.kron(f["in"], f["out"]) @ grad.reshape(-1),
    rtol=1e-4,
    atol=1e-4,
  )
  bias = rng.standard_normal(3)
  for vectors in ("diagonal", "full"):
    f = random_factors(rng, bias.shape, vectors)
    got = np.asarray(apply_meta_curvature(jnp.asarray(bias), f))
    matrix = np.diag(f["diagonal"]) if vectors == "diagonal" else f["full"]
    np.testing.assert_allclose(got, matrix @ bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("vectors", ["diagonal", "full"])
def test_identity_factors_give_back_the_gradient(vectors):
  ep = tiny_episode()
  weights = models.Conv4(3, filters=4).init(
    jax.random.key(0), ep.support_x.astype(np.float32)
  )["params"]
  factors = init_meta_curvature(weights, vectors=vectors)
  for leaf in jax.tree.leaves(factors):  # each factor an identity
    eye = np.eye(len(leaf)) if leaf.ndim == 2 else np.ones(leaf.shape)
    np.testing.assert_array_equal(leaf, eye)
  rng = np.random.default_rng(2)
  grads = jax.tree.map(lambda w: rng.standard_normal(w.shape), weights)
  grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), grads)
  tx = mc_transform(factors, learning_rate=0.3)
  updates, _ = tx.update(grads, tx.init(weights))
  jax.tree.map(
    lambda u, g: np.testing.assert_allclose(u, -0.3 * g, rtol=1e-6),
    updates,
    grads,
  )


def test_transform_update_is_minus_rate_times_mc():
  rng = np.random.default_rng(3)
  grads = {"k": rng.standard_normal((3, 3, 2, 4)), "b": rng.standard_normal(4)}
  factors = {k: random_factors(rng, g.shape) for k, g in grads.items()}
  tx = mc_transform(factors, learning_rate=0.5)
  updates, _ = tx.update(grads, tx.init(grads))
  k = grads["k"].reshape(9, 2, 4)
  for axis, name in enumerate(("filter", "in", "out")):
    k = mode_product(k, factors["k"][name], axis)
  np.testing.assert_allclose(
    updates["k"], -0.5 * k.reshape(3, 3, 2, 4), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    updates["b"], -0.5 * factors["b"]["diagonal"] * grads["b"], rtol=1e-6
  )


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_identity_init_is_maml(inner_steps):
  model = models.Conv4(3, filters=4)
  mc = meta_curvature(model, inner_lr=0.4, inner_steps=inner_steps)
  ref = maml(model, inner_lr=0.4, inner_steps=inner_steps)
  ep = tiny_episode()
  meta = mc.init(jax.random.key(0), ep)
  weights = ref.init(jax.random.key(0), ep)
  equal = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  equal(meta["params"], weights)
  # The same adapted weights, bit for bit.
  equal(mc.adapt(meta, ep.support, None), ref.adapt(weights, ep.support, None))
  loss, grads = jax.value_and_grad(query_loss_fn(mc, ep))(meta)
  ref_loss, ref_grads = jax.value_and_grad(query_loss_fn(ref, ep))(weights)
  np.testing.assert_array_equal(loss, ref_loss)
  # The backward pass goes through the identity factors' products: equal to
  # float32 rounding.
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
    grads["params"],
    ref_grads,
  )


class Linear(nn.Module):
  """y = x W, W [3, 2], no bias."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(2, use_bias=False, name="head")(x)


def test_factor_gradients_closed_form():
  """One inner step on a linear least-squares task: W' = W - a M_i G M_o^T
  with G the support gradient; dL_q/dM_i = -a Q M_o G^T and dL_q/dM_o =
  -a Q^T M_i G, Q the query gradient at W'."""
  rng = np.random.default_rng(4)
  xs, ys = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
  xq, yq = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
  ep = Episode(*(np.float32(a) for a in (xs, ys, xq, yq)))
  alpha = 0.3
  learner = meta_curvature(Linear(), inner_lr=alpha, task="regression")
  meta = learner.init(jax.random.key(0), ep)
  f = {
    k: np.eye(len(m)) + 0.3 * rng.standard_normal(m.shape)
    for k, m in meta["inner"]["head"]["kernel"].items()
  }
  meta["inner"]["head"]["kernel"] = jax.tree.map(np.float32, f)
  grads = jax.grad(query_loss_fn(learner, ep))(meta)
  xs, ys, xq, yq = (np.float64(np.float32(a)) for a in (xs, ys, xq, yq))
  f = jax.tree.map(lambda m: np.float64(np.float32(m)), f)
  w = np.float64(meta["params"]["head"]["kernel"])
  # MSE = mean over all entries: its gradient is 2 x^T (x w - y) / entries.
  g = 2 * xs.T @ (xs @ w - ys) / ys.size
  w1 = w - alpha * f["in"] @ g @ f["out"].T
  q = 2 * xq.T @ (xq @ w1 - yq) / yq.size
  got = grads["inner"]["head"]["kernel"]
  np.testing.assert_allclose(got["in"], -alpha * q @ f["out"] @ g.T, rtol=1e-4)
  np.testing.assert_allclose(got["out"], -alpha * q.T @ f["in"] @ g, rtol=1e-4)


class TinyConvNet(nn.Module):
  """A [2, 3] conv of 3 filters (metajax's Conv), ReLU, mean, Dense(3)."""

  @nn.compact
  def __call__(self, x):
    x = layers.Conv(3, kernel_size=(2, 3), strides=(2, 2), name="conv")(x)
    return nn.Dense(3, name="head")(jnp.mean(nn.relu(x), axis=(1, 2)))


@pytest.mark.parametrize("vectors", ["diagonal", "full"])
def test_factor_gradients_match_finite_differences(vectors):
  """Second-order meta-gradient of every factor, 2 inner steps, float64."""
  learner = meta_curvature(
    TinyConvNet(), inner_lr=0.5, inner_steps=2, vectors=vectors
  )
  ep = tiny_episode(size=6)
  meta32 = learner.init(jax.random.key(0), ep)  # float32 init, then cast
  with jax.enable_x64(True):
    rng = np.random.default_rng(5)
    meta = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), meta32)
    meta["inner"] = jax.tree.map(
      lambda m: m + 0.2 * rng.standard_normal(m.shape), meta["inner"]
    )
    loss = query_loss_fn(learner, ep)
    grads = jax.grad(loss)(meta)["inner"]
    for leaf in jax.tree.leaves(grads):  # the gradient reaches every factor
      assert np.abs(leaf).max() > 1e-8
    check_gradient_by_finite_differences(
      lambda inner: loss({"params": meta["params"], "inner": inner}),
      meta["inner"],
      rng,
    )


def test_trainable_mask_freezes_the_body():
  model = models.Conv4(3, filters=4)
  learner = meta_curvature(model, inner_steps=2, trainable=head_only())
  ep = tiny_episode()
  meta = learner.init(jax.random.key(0), ep)
  adapted = learner.adapt(meta, ep.support, None)
  for name in meta["params"]:
    same = jax.tree.map(np.array_equal, adapted[name], meta["params"][name])
    assert all(jax.tree.leaves(same)) == (name != "head"), name
  grads = jax.grad(query_loss_fn(learner, ep))(meta)["inner"]
  assert np.abs(grads["head"]["kernel"]["in"]).max() > 0
  assert not np.any(grads["conv0"]["kernel"]["filter"])


def test_bad_options():
  model = models.MLP(1)
  with pytest.raises(ValueError, match="vectors"):
    meta_curvature(model, vectors="dense")
  with pytest.raises(ValueError, match="inner_lr"):
    meta_curvature(model, inner_lr=0.0)
  with pytest.raises(ValueError, match="inner_opt"):
    meta_curvature(model, inner_opt=object())
