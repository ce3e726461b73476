"""Tests of metajax.models: the two conv lowerings agree, batch norm is pure."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import models
from metajax.models import layers

RTOL = 1e-4
ATOL = 1e-5


def _close(a, b, rtol=RTOL, atol=ATOL):
  chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


def _xent(logits, labels):
  logp = jax.nn.log_softmax(logits)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


# ---------------------------------------------------------------- conv2d


@pytest.mark.parametrize(
  "size,strides,padding",
  [
    (28, (1, 1), "SAME"),
    (28, (2, 2), "SAME"),
    (20, (1, 1), "SAME"),
    (20, (2, 2), "SAME"),
    (7, (2, 2), "SAME"),
    (2, (1, 1), "SAME"),
    (1, (2, 2), "SAME"),
    (7, (1, 1), "VALID"),
    (20, (2, 2), "VALID"),
    (28, (2, 1), "SAME"),
    (7, (2, 1), ((1, 0), (2, 1))),
    (20, (1, 1), ((0, 2), (1, 1))),
  ],
)
def test_conv2d_patches_matches_xla(size, strides, padding):
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (2, size, size + 1, 3))
  kernel = jax.random.normal(kk, (3, 3, 3, 4))
  fwd = {
    impl: jax.jit(
      functools.partial(
        layers.conv2d, strides=strides, padding=padding, impl=impl
      )
    )
    for impl in layers.CONV_IMPLS
  }
  y_patches = fwd["patches"](x, kernel)
  y_xla = fwd["xla"](x, kernel)
  expected = jax.lax.conv_general_dilated(
    x,
    kernel,
    strides,
    padding if isinstance(padding, str) else list(padding),
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  chex.assert_equal_shape([y_patches, y_xla, expected])
  _close(y_patches, expected)
  _close(y_xla, expected)
  # Gradients w.r.t. input and kernel of a non-trivial function.
  w = jax.random.normal(kg, y_xla.shape)
  grads = {
    impl: jax.jit(
      jax.grad(lambda x, k, f=f: jnp.sum(jnp.sin(f(x, k)) * w), argnums=(0, 1))
    )(x, kernel)
    for impl, f in fwd.items()
  }
  _close(grads["patches"], grads["xla"], atol=1e-4)


@pytest.mark.parametrize("lead,strides", [((), (1, 1)), ((2, 3), (2, 1))])
def test_conv2d_patches_one_input_channel_matches_xla(lead, strides):
  """C_in = 1 takes the rows-of-patches path; any number of leading axes."""
  kx, kk, kg = jax.random.split(jax.random.key(7), 3)
  x = jax.random.normal(kx, lead + (9, 8, 1))
  kernel = jax.random.normal(kk, (3, 3, 1, 4))
  fns = [
    functools.partial(f, strides=strides, padding="SAME")
    for f in (layers.conv2d_patches, layers.conv2d_xla)
  ]
  y_patches, y_xla = [jax.jit(f)(x, kernel) for f in fns]
  chex.assert_equal_shape([y_patches, y_xla])
  _close(y_patches, y_xla)
  w = jax.random.normal(kg, y_xla.shape)
  grads = [
    jax.jit(
      jax.grad(lambda x, k, f=f: jnp.sum(jnp.sin(f(x, k)) * w), argnums=(0, 1))
    )(x, kernel)
    for f in fns
  ]
  _close(grads[0], grads[1], atol=1e-4)


def test_conv2d_bfloat16_close_to_float32_to_second_order():
  """bfloat16 matmuls: bfloat16 in the program, float32 out, close values."""
  kx, kk, _ = jax.random.split(jax.random.key(8), 3)
  x = jax.random.normal(kx, (2, 3, 9, 9, 8))  # [tasks, batch, H, W, C]
  kernel = jax.random.normal(kk, (2, 3, 3, 8, 4)) / 8.0

  def second_order(k, x, dtype):
    conv = functools.partial(
      layers.conv2d_patches, strides=(2, 2), compute_dtype=dtype
    )
    loss = lambda k: jnp.mean(jnp.tanh(conv(x, k)) ** 2)
    return loss(k - 0.5 * jax.grad(loss)(k))

  outs = {}
  for dtype in layers.COMPUTE_DTYPES:
    fn = jax.vmap(
      jax.value_and_grad(second_order, argnums=(0, 1)), in_axes=(0, 0, None)
    )
    outs[dtype] = jax.jit(fn, static_argnums=2)(kernel, x, dtype)
    jaxpr = str(jax.make_jaxpr(fn, static_argnums=2)(kernel, x, dtype))
    assert ("bf16" in jaxpr) == (dtype == "bfloat16"), dtype
  chex.assert_trees_all_equal_dtypes(outs["float32"], outs["bfloat16"])
  chex.assert_tree_all_finite(outs["bfloat16"])
  _close(outs["bfloat16"], outs["float32"], rtol=3e-2, atol=1e-3)
  y32, y16 = [
    layers.conv2d_patches(x[0], kernel[0], compute_dtype=d)
    for d in layers.COMPUTE_DTYPES
  ]
  assert y16.dtype == jnp.float32
  _close(y16, y32, rtol=3e-2, atol=3e-2)


def test_conv_compute_dtype_errors():
  x, kernel = jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2))
  with pytest.raises(ValueError, match="compute_dtype must be one of"):
    layers.conv2d(x, kernel, compute_dtype="float16")
  with pytest.raises(ValueError, match="needs impl='patches'"):
    layers.conv2d(x, kernel, impl="xla", compute_dtype="bfloat16")
  with pytest.raises(ValueError, match="compute_dtype must be one of"):
    models.Conv4(5, filters=2, compute_dtype="bf16").init(
      jax.random.key(0), jnp.zeros((1, 16, 16, 1))
    )
  with pytest.raises(ValueError, match="needs conv_impl='patches'"):
    models.Conv4(5, filters=2, conv_impl="xla", compute_dtype="bfloat16").init(
      jax.random.key(0), jnp.zeros((1, 16, 16, 1))
    )


def test_conv2d_unknown_impl_raises():
  with pytest.raises(ValueError, match="conv impl"):
    layers.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 2)), impl="fft")


def test_extract_patches_order_matches_hwio_kernel():
  x = jnp.arange(2 * 4 * 5 * 3, dtype=jnp.float32).reshape(2, 4, 5, 3)
  p = layers.extract_patches(x, (3, 3), (1, 1), "VALID")
  chex.assert_shape(p, (2, 2, 3, 27))
  # Patch at output (1, 2) is x[:, 1:4, 2:5, :] flattened in (kh, kw, C).
  np.testing.assert_array_equal(p[:, 1, 2], x[:, 1:4, 2:5, :].reshape(2, 27))


@pytest.mark.parametrize("impl", layers.POOL_IMPLS)
def test_max_pool_matches_flax(impl):
  x = jax.random.normal(jax.random.key(1), (4, 2, 7, 6, 3))
  ref = lambda x: nn.max_pool(x, (2, 2), (2, 2), "VALID")
  pool = functools.partial(layers.max_pool, window=2, impl=impl)
  w = jax.random.normal(jax.random.key(2), (4, 2, 3, 3, 3))

  @jax.jit
  def outputs(x):
    out = {}
    for name, f in (("pool", pool), ("ref", ref)):
      g = jax.grad(lambda x, f=f: jnp.sum(jnp.sin(f(x)) * w))
      # Second order, as in MAML: d/dx of a function of the gradient.
      gg = jax.grad(lambda x, g=g: jnp.sum(jnp.sin(g(x))))
      out[name] = (f(x), g(x), gg(x))
    return out

  out = outputs(x)
  _close(out["pool"], out["ref"], atol=1e-6)


def test_max_pool_unknown_impl_raises():
  with pytest.raises(ValueError, match="pool impl"):
    layers.max_pool(jnp.zeros((1, 4, 4, 1)), 2, impl="avg")


# ---------------------------------------------------------------- Conv4


def _random_variables(net, x_shape, key, tasks=None):
  """Random variables shaped like `net.init`'s, without compiling init.

  Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.01), scales ~ 1 + N(0, 0.01);
  with `tasks`, each leaf gets a leading task axis of independent draws.
  """
  shapes = jax.eval_shape(
    net.init, jax.random.key(0), jax.ShapeDtypeStruct(x_shape, jnp.float32)
  )
  leaves, treedef = jax.tree.flatten(shapes)
  keys = jax.random.split(key, len(leaves))
  lead = () if tasks is None else (tasks,)
  new = []
  for path_leaf, k in zip(
    jax.tree_util.tree_flatten_with_path(shapes)[0], keys
  ):
    path, leaf = path_leaf
    noise = jax.random.normal(k, lead + leaf.shape)
    if len(leaf.shape) > 1:
      new.append(noise / np.sqrt(np.prod(leaf.shape[:-1])))
    elif path[-1].key == "scale":
      new.append(1.0 + 0.1 * noise)
    else:
      new.append(0.1 * noise)
  return jax.tree.unflatten(treedef, new)


def _conv4_pair(pooling, filters=8, num_outputs=5, **kwargs):
  return {
    impl: models.Conv4(
      num_outputs, filters=filters, pooling=pooling, conv_impl=impl, **kwargs
    )
    for impl in layers.CONV_IMPLS
  }


@pytest.mark.parametrize("pooling", ["stride", "max"])
def test_conv4_params_tree_identical_between_impls(pooling):
  nets = _conv4_pair(pooling)
  x = jax.ShapeDtypeStruct((2, 20, 20, 1), jnp.float32)
  trees = {
    impl: jax.eval_shape(net.init, jax.random.key(0), x)
    for impl, net in nets.items()
  }
  chex.assert_trees_all_equal_structs(trees["patches"], trees["xla"])
  chex.assert_trees_all_equal_shapes_and_dtypes(trees["patches"], trees["xla"])
  params = trees["patches"]["params"]
  assert set(trees["patches"]) == {"params"}
  assert set(params) == {
    "conv0",
    "conv1",
    "conv2",
    "conv3",
    "norm0",
    "norm1",
    "norm2",
    "norm3",
    "head",
  }
  assert params["conv0"]["kernel"].shape == (3, 3, 1, 8)
  assert params["conv3"]["kernel"].shape == (3, 3, 8, 8)
  assert "bias" not in params["conv0"]  # batch norm follows every conv


def test_conv4_init_gives_the_same_params_for_both_impls():
  x = jnp.zeros((2, 16, 16, 1))
  trees = {
    impl: net.init(jax.random.key(5), x)
    for impl, net in _conv4_pair("max", filters=4).items()
  }
  chex.assert_trees_all_equal(trees["patches"], trees["xla"])


@pytest.mark.parametrize(
  "pooling,size", [("stride", 28), ("stride", 20), ("max", 28), ("max", 20)]
)
def test_conv4_impls_agree(pooling, size):
  nets = _conv4_pair(pooling)
  kx, kp = jax.random.split(jax.random.key(3))
  x = jax.random.uniform(kx, (6, size, size, 1))
  y = jnp.arange(6) % 5
  variables = _random_variables(nets["patches"], x.shape, kp)

  def logits_loss_grads(net, variables, x):
    loss = lambda v, x: _xent(net.apply(v, x), y)
    return (net.apply(variables, x),) + jax.value_and_grad(
      loss, argnums=(0, 1)
    )(variables, x)

  outs = {
    impl: jax.jit(functools.partial(logits_loss_grads, net))(variables, x)
    for impl, net in nets.items()
  }
  logits, _, grads = outs["patches"]
  chex.assert_shape(logits, (6, 5))
  chex.assert_tree_all_finite(grads)
  # logits, loss, (d/dparams, d/dx)
  _close(outs["patches"], outs["xla"], atol=1e-4)


@pytest.mark.parametrize("pooling", ["stride", "max"])
def test_conv4_impls_agree_under_vmap_with_per_task_params(pooling):
  """MAML-like second-order loss; each task has its own weights."""
  tasks, size = 3, 20
  nets = _conv4_pair(pooling)
  kx, kp = jax.random.split(jax.random.key(4))
  x = jax.random.uniform(kx, (tasks, 5, size, size, 1))
  y = jnp.tile(jnp.arange(5), (tasks, 1))
  per_task = _random_variables(nets["patches"], x.shape[1:], kp, tasks)

  def logits_loss_grads(net, variables, x, y):
    support_loss = lambda v, x: _xent(net.apply(v, x), y)

    def second_order_loss(v, x):
      g = jax.grad(support_loss)(v, x)
      return support_loss(jax.tree.map(lambda v, g: v - 0.4 * g, v, g), x)

    return (net.apply(variables, x),) + jax.value_and_grad(
      second_order_loss, argnums=(0, 1)
    )(variables, x)

  outs = {}
  for impl, net in nets.items():
    fn = functools.partial(logits_loss_grads, net)
    outs[impl] = jax.jit(jax.vmap(fn))(per_task, x, y)
  chex.assert_shape(outs["patches"][0], (tasks, 5, 5))
  chex.assert_tree_all_finite(outs["patches"])
  _close(outs["patches"], outs["xla"], rtol=1e-3, atol=1e-4)
  # vmap over tasks equals a loop over tasks.
  apply = jax.jit(nets["patches"].apply)
  for t in range(tasks):
    task_variables = jax.tree.map(lambda v, t=t: v[t], per_task)
    _close(apply(task_variables, x[t]), outs["patches"][0][t], atol=1e-4)


@pytest.mark.parametrize(
  "pooling,size,readout,features",
  [
    ("stride", 28, None, 8),  # 28 -> 14 -> 7 -> 4 -> 2, mean
    ("stride", 28, "flatten", 2 * 2 * 8),
    ("max", 84, None, 5 * 5 * 8),  # 84 -> 42 -> 21 -> 10 -> 5, flatten
    ("max", 84, "mean", 8),
    ("stride", 20, None, 8),
  ],
)
def test_conv4_output_shapes(pooling, size, readout, features):
  x = jax.ShapeDtypeStruct((3, size, size, 1), jnp.float32)
  key = jax.random.key(0)
  for num_outputs, width in ((5, 5), (None, features)):
    net = models.Conv4(num_outputs, filters=8, pooling=pooling, readout=readout)
    variables = jax.eval_shape(net.init, key, x)
    out = jax.eval_shape(net.apply, variables, x)
    assert out.shape == (3, width)
    assert out.dtype == jnp.float32


def test_conv4_defaults_are_maml_omniglot():
  net = models.Conv4(5)
  assert (net.filters, net.pooling, net.conv_impl, net.norm) == (
    64,
    "stride",
    "patches",
    True,
  )
  x = jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32)
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  assert variables["params"]["head"]["kernel"].shape == (64, 5)
  assert jax.eval_shape(net.apply, variables, x).shape == (2, 5)


def test_conv4_without_norm_has_conv_bias():
  net = models.Conv4(5, filters=4, norm=False)
  x = jax.ShapeDtypeStruct((2, 12, 12, 1), jnp.float32)
  params = jax.eval_shape(net.init, jax.random.key(0), x)["params"]
  assert set(params) == {"conv0", "conv1", "conv2", "conv3", "head"}
  assert params["conv0"]["bias"].shape == (4,)


def test_conv4_bad_options_raise():
  x = jnp.zeros((1, 8, 8, 1))
  with pytest.raises(ValueError, match="pooling"):
    models.Conv4(5, filters=2, pooling="avg").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="readout"):
    models.Conv4(5, filters=2, readout="sum").init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="too small"):
    models.Conv4(5, filters=2, pooling="max").init(jax.random.key(0), x)


# ---------------------------------------------------------------- batch norm


def test_batch_stat_norm_matches_numpy():
  rng = np.random.default_rng(0)
  x = (3.0 + 2.5 * rng.standard_normal((4, 5, 6, 3))).astype(np.float32)
  net = models.BatchStatNorm()
  variables = net.init(jax.random.key(0), x)
  assert set(variables) == {"params"}
  chex.assert_trees_all_equal(
    variables["params"], {"scale": jnp.ones(3), "bias": jnp.zeros(3)}
  )
  y = np.asarray(net.apply(variables, x))
  # Before scale/bias (they start at 1 and 0): per-channel mean 0, var 1.
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=1e-3)
  scale = np.array([0.5, 2.0, -1.0], np.float32)
  bias = np.array([0.1, -0.2, 3.0], np.float32)
  y = net.apply({"params": {"scale": scale, "bias": bias}}, x)
  mean = x.mean(axis=(0, 1, 2))
  var = x.var(axis=(0, 1, 2))  # biased, as in training-mode batch norm
  expected = (x - mean) / np.sqrt(var + 1e-5) * scale + bias
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_batch_stat_norm_has_no_state():
  rng = np.random.default_rng(1)
  a = rng.standard_normal((5, 4, 4, 2)).astype(np.float32)
  b = (10.0 + rng.standard_normal((5, 4, 4, 2))).astype(np.float32)
  net = models.BatchStatNorm()
  variables = net.init(jax.random.key(0), a)
  y_b_alone = net.apply(variables, b)
  _ = net.apply(variables, a)
  y_b_after_a = net.apply(variables, b)
  np.testing.assert_array_equal(y_b_alone, y_b_after_a)
  # The statistics are the current batch's: b in a joint batch differs.
  y_joint = net.apply(variables, np.concatenate([a, b]))[5:]
  assert not np.allclose(y_joint, y_b_alone, atol=1e-2)


def test_conv4_has_no_state_and_is_per_batch():
  net = models.Conv4(5, filters=4)
  rng = np.random.default_rng(2)
  a = rng.random((3, 12, 12, 1), np.float32)
  b = rng.random((3, 12, 12, 1), np.float32)
  variables = jax.jit(net.init)(jax.random.key(0), a)
  assert set(variables) == {"params"}
  apply = jax.jit(net.apply)
  y_b = apply(variables, b)
  apply(variables, a)
  np.testing.assert_array_equal(apply(variables, b), y_b)


# ---------------------------------------------------------------- MLP


def test_mlp_matches_numpy():
  net = models.MLP(1)
  x = np.linspace(-5, 5, 10, dtype=np.float32)[:, None]
  variables = net.init(jax.random.key(0), x)
  params = variables["params"]
  assert set(variables) == {"params"}
  assert set(params) == {"dense0", "dense1", "head"}
  chex.assert_shape(params["dense0"]["kernel"], (1, 40))
  chex.assert_shape(params["dense1"]["kernel"], (40, 40))
  chex.assert_shape(params["head"]["kernel"], (40, 1))
  y = net.apply(variables, x)
  chex.assert_shape(y, (10, 1))
  p = jax.tree.map(np.asarray, params)
  h = np.maximum(x @ p["dense0"]["kernel"] + p["dense0"]["bias"], 0)
  h = np.maximum(h @ p["dense1"]["kernel"] + p["dense1"]["bias"], 0)
  expected = h @ p["head"]["kernel"] + p["head"]["bias"]
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_mlp_custom_hidden_shape():
  net = models.MLP(3, hidden=(8, 6, 4))
  x = jnp.zeros((7, 2))
  variables = net.init(jax.random.key(0), x)
  assert set(variables["params"]) == {"dense0", "dense1", "dense2", "head"}
  chex.assert_shape(net.apply(variables, x), (7, 3))


def test_mlp_flattens_images_and_embeds_without_a_head():
  x = np.random.default_rng(0).standard_normal((3, 4, 5, 2)).astype(np.float32)
  net = models.MLP(2, hidden=(6,))
  variables = net.init(jax.random.key(0), x)
  flat = x.reshape(3, -1)
  np.testing.assert_array_equal(
    net.apply(variables, x), net.apply(variables, flat)
  )
  embed = models.MLP(None, hidden=(6,))
  p = embed.init(jax.random.key(0), x)["params"]
  assert set(p) == {"dense0"}
  np.testing.assert_allclose(
    embed.apply({"params": p}, x),
    np.maximum(flat @ p["dense0"]["kernel"] + p["dense0"]["bias"], 0),
    rtol=1e-5,
    atol=1e-5,
  )
  # No layers at all: the flattened input, and no parameters.
  pixels = models.MLP(None, hidden=())
  assert not pixels.init(jax.random.key(0), x).get("params")
  np.testing.assert_array_equal(pixels.apply({}, x), flat)
