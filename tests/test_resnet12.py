"""Tests of the ResNet-12 backbone and DropBlock.

The net against an independent reference (lax convolutions, numpy batch
norm, LeakyReLU and pooling), its shapes and parameter count by hand, its two
conv lowerings against each other, and a ProtoNets and a MAML meta-step on it
through the config.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import from_config
from metajax import models
from metajax.models import layers
from tests.test_family import check_meta_training, tiny_episode
from tests.test_models import _random_variables, _xent

EPS = 1e-5


def _pair(channels=(4, 6, 8, 5), num_outputs=5, **kwargs):
  return {
    impl: models.ResNet12(
      num_outputs, channels=channels, conv_impl=impl, **kwargs
    )
    for impl in layers.CONV_IMPLS
  }


# ------------------------------------------------------- shapes and params


@pytest.mark.parametrize(
  "size,readout,features",
  [
    (84, "flatten", 5 * 5 * 640),  # 84 -> 42 -> 21 -> 10 -> 5
    (84, "mean", 640),
    (32, "flatten", 2 * 2 * 640),  # 32 -> 16 -> 8 -> 4 -> 2
    (20, "flatten", 1 * 1 * 640),  # 20 -> 10 -> 5 -> 2 -> 1
  ],
)
def test_output_shapes_at_default_channels(size, readout, features):
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  for num_outputs, width in ((5, 5), (None, features)):
    net = models.ResNet12(num_outputs, readout=readout)
    out, _ = jax.eval_shape(
      lambda x, net=net: net.init_with_output(jax.random.key(0), x), x
    )
    assert out.shape == (2, width)


def test_parameter_count_by_hand():
  """Each block: three 3x3 convs, a 1x1 shortcut, four batch norms."""
  net = models.ResNet12(None)
  x = jax.ShapeDtypeStruct((1, 84, 84, 3), jnp.float32)
  params = jax.eval_shape(net.init, jax.random.key(0), x)["params"]
  count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
  expected, c_in = 0, 3
  for c in (64, 160, 320, 640):
    expected += 9 * c_in * c + 9 * c * c * 2 + c_in * c + 4 * 2 * c
    c_in = c
  assert count == expected
  assert 12.4e6 < count < 12.5e6  # MetaOptNet's 12.4M
  assert set(params) == {"block0", "block1", "block2", "block3"}
  assert set(params["block2"]) == {
    "conv0",
    "conv1",
    "conv2",
    "shortcut",
    "norm0",
    "norm1",
    "norm2",
    "shortcut_norm",
  }
  assert "bias" not in params["block0"]["conv0"]


def test_without_norm_the_convs_have_bias():
  net = models.ResNet12(None, channels=(4, 4), norm=False)
  x = jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32)
  block = jax.eval_shape(net.init, jax.random.key(0), x)["params"]["block1"]
  assert set(block) == {"conv0", "conv1", "conv2", "shortcut"}
  assert block["conv0"]["bias"].shape == (4,)


def test_too_small_images_and_bad_options_raise():
  x = jnp.zeros((1, 8, 8, 1))
  with pytest.raises(ValueError, match="too small"):
    models.ResNet12(None, channels=(2, 2, 2, 2)).init(jax.random.key(0), x)
  for bad in (
    dict(channels=()),
    dict(channels=(4, 0)),
    dict(conv_impl="fft"),
    dict(readout="max"),
    dict(drop_rate=1.0),
    dict(block_size=0),
    dict(conv_impl="xla", compute_dtype="bfloat16"),
  ):
    option = next(iter(bad))
    with pytest.raises(ValueError, match=option):
      models.ResNet12(None, **bad)


# --------------------------------------------------------------- reference


def _ref_conv(x, kernel):
  return np.asarray(
    jax.lax.conv_general_dilated(
      jnp.asarray(x, jnp.float32),
      jnp.asarray(kernel, jnp.float32),
      (1, 1),
      "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST,
    ),
    np.float64,
  )


def _ref_norm(x, p, rows):
  s = x[:rows]
  mean = s.mean(axis=(0, 1, 2))
  var = ((s - mean) ** 2).mean(axis=(0, 1, 2))
  return (x - mean) / np.sqrt(var + EPS) * p["scale"] + p["bias"]


def _ref_block(x, p, rows):
  """One residual block written out: the RFS / MetaOptNet BasicBlock."""
  lrelu = lambda y: np.where(y > 0, y, 0.1 * y)
  out = x
  for i in range(3):
    out = _ref_norm(
      _ref_conv(out, p[f"conv{i}"]["kernel"]), p[f"norm{i}"], rows
    )
    if i < 2:
      out = lrelu(out)
  short = _ref_norm(
    _ref_conv(x, p["shortcut"]["kernel"]), p["shortcut_norm"], rows
  )
  out = lrelu(out + short)
  b, h, w, c = out.shape
  out = out[:, : h // 2 * 2, : w // 2 * 2]
  return out.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@pytest.mark.parametrize("impl", layers.CONV_IMPLS)
@pytest.mark.parametrize("stats_rows", [None, 3])
def test_net_equals_a_reference_computation(impl, stats_rows):
  nets = _pair()
  x = jax.random.uniform(jax.random.key(0), (5, 21, 21, 2))
  variables = _random_variables(nets[impl], x.shape, jax.random.key(1))
  got = jax.jit(nets[impl].apply, static_argnums=2)(variables, x, stats_rows)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  rows = x.shape[0] if stats_rows is None else stats_rows
  ref = np.asarray(x, np.float64)
  for i in range(4):  # 21 -> 10 -> 5 -> 2 -> 1
    ref = _ref_block(ref, p[f"block{i}"], rows)
  assert ref.shape == (5, 1, 1, 5)
  ref = ref.reshape(5, -1) @ p["head"]["kernel"] + p["head"]["bias"]
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------- lowerings


def test_impls_agree_with_gradients():
  nets = _pair()
  x = jax.random.uniform(jax.random.key(2), (6, 20, 20, 1))
  y = jnp.arange(6) % 5
  variables = _random_variables(nets["patches"], x.shape, jax.random.key(3))

  def out_and_grads(net, v, x):
    loss = lambda v, x: _xent(net.apply(v, x), y)
    return net.apply(v, x), jax.grad(loss, argnums=(0, 1))(v, x)

  outs = {
    impl: jax.jit(functools.partial(out_and_grads, net))(variables, x)
    for impl, net in nets.items()
  }
  chex.assert_tree_all_finite(outs["patches"])
  chex.assert_trees_all_close(
    outs["patches"], outs["xla"], rtol=1e-4, atol=1e-4
  )


def test_impls_agree_under_vmap_with_per_task_params_second_order():
  tasks = 2
  nets = _pair(channels=(4, 4, 4, 4))
  x = jax.random.uniform(jax.random.key(4), (tasks, 5, 16, 16, 1))
  y = jnp.tile(jnp.arange(5), (tasks, 1))
  per_task = _random_variables(
    nets["patches"], x.shape[1:], jax.random.key(5), tasks
  )

  def second_order(net, v, x, y):
    def outer(v):
      g = jax.grad(lambda v: _xent(net.apply(v, x), y))(v)
      adapted = jax.tree.map(lambda v, g: v - 0.4 * g, v, g)
      return _xent(net.apply(adapted, x), y)

    return jax.value_and_grad(outer)(v)

  outs = {
    impl: jax.jit(jax.vmap(functools.partial(second_order, net)))(
      per_task, x, y
    )
    for impl, net in nets.items()
  }
  chex.assert_tree_all_finite(outs["patches"])
  assert float(jnp.abs(jax.tree.leaves(outs["patches"][1])[0]).sum()) > 0
  chex.assert_trees_all_close(
    outs["patches"], outs["xla"], rtol=1e-3, atol=1e-4
  )


# ---------------------------------------------------------------- DropBlock


def _expected_drop_fraction(h, b, rate):
  """Mean over positions of 1 - (1 - gamma)^(seeds covering the position)."""
  gamma = rate / b**2 * h * h / (h - b + 1) ** 2
  seeds = np.zeros((h, h))
  for i in range(h - b + 1):
    for j in range(h - b + 1):
      seeds[i : i + b, j : j + b] += 1
  return float(np.mean(1 - (1 - gamma) ** seeds))


@pytest.mark.parametrize("h,b,rate", [(10, 3, 0.2), (5, 5, 0.3), (8, 1, 0.25)])
def test_drop_block_drops_the_expected_fraction(h, b, rate):
  x = jnp.ones((64, h, h, 16))
  out = np.asarray(layers.drop_block(x, jax.random.key(0), rate, b))
  dropped = out == 0
  expected = _expected_drop_fraction(h, b, rate)
  assert abs(dropped.mean() - expected) < 0.03, (dropped.mean(), expected)
  assert abs(expected - rate) < 0.1  # gamma is calibrated to about `rate`
  # The kept values are scaled by (count) / (count kept): the sum is kept.
  kept = out[~dropped]
  np.testing.assert_allclose(kept, x.size / kept.size, rtol=1e-5)
  if b == h:  # one seed position: each channel map is dropped whole or kept
    per_map = dropped.mean(axis=(1, 2))
    assert set(np.unique(per_map)) <= {0.0, 1.0}


def test_drop_block_drops_squares():
  """One seed, far from the edges: exactly one b x b square is zeroed."""
  h, b = 9, 3
  x = jnp.ones((1, h, h, 1))
  for seed in range(200):
    out = np.asarray(layers.drop_block(x, jax.random.key(seed), 0.05, b))
    zeros = np.argwhere(out[0, :, :, 0] == 0)
    if len(zeros) == b * b:
      lo, hi = zeros.min(axis=0), zeros.max(axis=0)
      np.testing.assert_array_equal(hi - lo, [b - 1, b - 1])
      return
  pytest.fail("no single-seed draw in 200 tries")


def test_drop_block_is_off_at_eval_and_on_in_training():
  x = jax.random.uniform(jax.random.key(6), (4, 20, 20, 1))
  net = models.ResNet12(5, channels=(4, 4, 4, 4), drop_rate=0.3, block_size=2)
  plain = models.ResNet12(5, channels=(4, 4, 4, 4))
  variables = net.init(jax.random.key(7), x)
  eval_out = net.apply(variables, x)
  np.testing.assert_array_equal(eval_out, plain.apply(variables, x))
  rngs = {"dropout": jax.random.key(8)}
  train_out = net.apply(variables, x, train=True, rngs=rngs)
  assert not np.allclose(train_out, eval_out)
  np.testing.assert_array_equal(
    plain.apply(variables, x, train=True, rngs=rngs), eval_out
  )
  with pytest.raises(Exception, match="dropout"):
    net.apply(variables, x, train=True)


# ------------------------------------------------------ learners by config


@pytest.mark.parametrize("learner", ["protonet", "maml"])
def test_config_model_resnet12_trains_a_learner(learner, tmp_path):
  config = from_config.default_config()
  config.update(
    dict(learner=learner, model="resnet12", ways=3, shots=1, image_size=20)
  )
  config.data_dir = str(tmp_path)
  config.model_kwargs.update(dict(channels=(4, 4, 4, 4)))
  if learner == "maml":
    config.learner_kwargs.update(dict(inner_steps=1))
  config = from_config.validate(config)
  built = from_config.build_learner(config)
  ep = tiny_episode(ways=3, size=20)
  batch = jax.tree.map(lambda a: np.stack([a, a]), ep)
  meta0 = check_meta_training(built, batch)
  blocks = meta0["embed"] if learner == "protonet" else meta0
  assert blocks["block3"]["conv2"]["kernel"].shape == (3, 3, 4, 4)
