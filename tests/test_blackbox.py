"""The black-box learners, MANN and SNAIL: memory, causality, independence."""

import importlib
import json
import logging
import math
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import legacy_configs
from experiments.configs import mann_omniglot, snail_omniglot
from metajax import from_config
from metajax import models, runs
from metajax.learners.embedding import embed_each
from metajax.learners.lrua import least_used, lrua_step
from metajax.learners.mann import mann
from metajax.learners.mann import online_logits_fn
from metajax.learners.online_protocol import accuracy_by_instance
from metajax.learners.sequence import support_sequence
from metajax.learners.snail import SNAIL, AttentionBlock, attention_fn
from metajax.learners.snail import snail, tc_depth
from tests.conftest import REPO
from tests.test_family import check_meta_training, tiny_episode

TINY_MANN = dict(
  memory_slots=6, memory_size=4, controller_size=8, read_heads=2, gamma=0.9
)
TINY_SNAIL = dict(attention=((4, 4), (6, 4)), tc_filters=3)  # Att TC Att


class FlatDense(nn.Module):
  """A cheap embedding for unit tests: flatten, then one dense layer."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(x.reshape(x.shape[0], -1))


def tiny_learner(name):
  if name == "mann":
    return mann(FlatDense(), ways=3, **TINY_MANN)
  return snail(FlatDense(), ways=3, shots=1, **TINY_SNAIL)


@pytest.fixture(scope="module", name="tiny")
def fixture_tiny():
  """{name: (learner, meta_params, jitted adapt-then-predict)}."""
  out = {}
  ep = tiny_episode(ways=3, shots=1, queries=2)
  for name in ("mann", "snail"):
    learner = tiny_learner(name)
    params = jax.jit(learner.init)(jax.random.key(0), ep)
    run = jax.jit(
      lambda p, s, q, k, l=learner: l.predict(p, l.adapt(p, s, k), q)
    )
    out[name] = (learner, params, run)
  return out


@pytest.mark.parametrize("ntm_style", [False, True])
def test_lrua_step_against_hand_computation(ntm_style):
  rng = np.random.default_rng(0)
  memory = rng.standard_normal((4, 3)).astype(np.float32)
  read_prev = rng.dirichlet(np.ones(4), size=2).astype(np.float32)  # 2 heads
  usage = np.array([0.5, 0.1, 0.9, 0.3], np.float32)
  keys = rng.standard_normal((2, 3)).astype(np.float32)
  # The vectors written: add vectors of their own, or the keys (the paper's);
  # the cosines scaled by key strengths, or not (the paper's).
  adds = rng.standard_normal((2, 3)).astype(np.float32)
  strengths = np.array([1.5, 7.0], np.float32)
  written = adds if ntm_style else keys
  beta = strengths if ntm_style else np.ones(2)
  alphas = np.array([0.4, -1.2], np.float32)
  gamma = 0.9
  # By hand: the 2 least used slots are 1 and 3; slot 1 is erased.
  least = np.array([0.0, 1.0, 0.0, 1.0])
  gate = 1.0 / (1.0 + np.exp(-alphas.astype(np.float64)))
  write = np.zeros((2, 4))
  for h in range(2):
    for i in range(4):
      write[h, i] = gate[h] * read_prev[h, i] + (1 - gate[h]) * least[i]
  new_memory = memory.astype(np.float64)
  new_memory[1] = 0.0
  for i in range(4):
    for h in range(2):
      new_memory[i] += write[h, i] * written[h]
  read = np.zeros((2, 4))
  for h in range(2):
    cos = [
      keys[h]
      @ new_memory[i]
      / (np.linalg.norm(keys[h]) * np.linalg.norm(new_memory[i]))
      for i in range(4)
    ]
    read[h] = np.exp(beta[h] * np.array(cos)) / np.sum(
      np.exp(beta[h] * np.array(cos))
    )
  reads = read @ new_memory
  new_usage = gamma * usage + read.sum(0) + write.sum(0)

  out = lrua_step(
    memory,
    read_prev,
    usage,
    keys,
    alphas,
    gamma=gamma,
    adds=adds if ntm_style else None,
    strengths=strengths if ntm_style else None,
  )
  for got, want in zip(out, (new_memory, read, write, new_usage, reads)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(least_used(jnp.asarray(usage), 2), least)


def test_accuracy_by_instance_by_hand():
  labels = np.array([[0, 1, 0, 0, 1, 2]])
  # instance: 1, 1, 2, 3, 2, 1; correct: F, T, T, F, T, T
  predictions = np.array([[2, 1, 0, 1, 1, 2]])
  acc = accuracy_by_instance(predictions, labels, instances=(1, 2, 3, 5))
  assert acc[1] == pytest.approx(2 / 3)
  assert acc[2] == 1.0 and acc[3] == 0.0 and math.isnan(acc[5])
  logits = np.eye(3)[predictions[0]]  # [T, ways] logits give the same
  assert accuracy_by_instance(logits, labels[0], (1,))[1] == acc[1]


def test_support_sequence_order_and_labels():
  x = np.arange(6, dtype=np.float32)[:, None] * 10
  y = np.array([0, 0, 1, 1, 2, 2], np.int32)
  key = jax.random.key(3)
  xs, onehot, ys = support_sequence((x, y), key, 3, label_shift=0)
  again = support_sequence((x, y), key, 3, label_shift=1)
  # Each example keeps its own label: x = 10 * its original index.
  np.testing.assert_array_equal(y[(np.asarray(xs[:, 0]) / 10).astype(int)], ys)
  assert sorted(np.asarray(xs[:, 0]).tolist()) == x[:, 0].tolist()
  np.testing.assert_array_equal(again[0], xs)  # same key, same order
  np.testing.assert_array_equal(np.argmax(onehot, -1), ys)
  np.testing.assert_array_equal(again[1][0], np.zeros(3))  # y_{-1}: none
  np.testing.assert_array_equal(again[1][1:], onehot[:-1])
  orders = {
    tuple(
      np.asarray(
        support_sequence((x, y), jax.random.key(k), 3, label_shift=0)[2]
      )
    )
    for k in range(4)
  }
  assert len(orders) > 1  # the order comes from the key


def test_attention_block_is_masked_softmax_attention():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((5, 3)).astype(np.float32)
  block = AttentionBlock(key_size=4, value_size=2)
  params = block.init(jax.random.key(0), x)["params"]
  out = np.asarray(block.apply({"params": params}, x))
  affine = lambda name: (
    x @ np.asarray(params[name]["kernel"]) + np.asarray(params[name]["bias"])
  )
  q, k, v = affine("query"), affine("key"), affine("value")
  np.testing.assert_array_equal(out[:, :3], x)
  for t in range(5):
    logits = np.array([q[t] @ k[s] / 2.0 for s in range(t + 1)])  # sqrt(4)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    np.testing.assert_allclose(
      out[t, 3:], weights @ v[: t + 1], rtol=1e-5, atol=1e-6
    )


def test_snail_is_causal(tiny):
  _, params, _ = tiny["snail"]
  # The tiny learner's SNAIL (3 ways, T = 4), on a longer sequence of its
  # input width (4 features + 3 label entries): params do not depend on T.
  model = SNAIL(ways=3, depth=tc_depth(4), **TINY_SNAIL)
  length = 7
  x = np.random.default_rng(2).standard_normal((length, 7)).astype(np.float32)
  apply = jax.jit(lambda v: model.apply({"params": params["snail"]}, v))
  base = np.asarray(apply(x))
  for j in (0, 3, 6):
    changed = np.asarray(apply(_with(x, j, x[j] + 1.0)))
    np.testing.assert_array_equal(changed[:j], base[:j])
    assert np.abs(changed[j:] - base[j:]).max(axis=-1).min() > 0


def test_snail_query_steps_equal_the_full_sequence(tiny):
  _, params, _ = tiny["snail"]
  model = SNAIL(ways=3, depth=tc_depth(4), **TINY_SNAIL)
  apply = jax.jit(lambda *v: model.apply({"params": params["snail"]}, *v))
  rng = np.random.default_rng(3)
  for n in (0, 5):  # support steps; 5 is past the convs' receptive field
    prefix = rng.standard_normal((n, 7)).astype(np.float32)
    queries = rng.standard_normal((3, 7)).astype(np.float32)
    full = [apply(np.concatenate([prefix, q[None]]))[-1] for q in queries]
    _, fast = apply(prefix, queries)
    np.testing.assert_allclose(fast, np.stack(full), rtol=1e-5, atol=1e-6)


def test_snail_attention_fn_is_the_first_blocks_softmax(tiny):
  """The first block's query weights recomputed by hand from its params and
  the support sequence: softmax of q . [k_1..k_n, own k] / sqrt(K)."""
  learner, params, _ = tiny["snail"]
  ep = tiny_episode(ways=3, shots=1, queries=2)
  state = learner.adapt(params, ep.support, jax.random.key(5))
  weights = jax.jit(attention_fn(FlatDense(), ways=3, shots=1, **TINY_SNAIL))(
    params, state, ep.query_x
  )
  assert [w.shape for w in weights] == [(6, 4), (6, 4)]  # 2 blocks, 6 queries
  for w in weights:
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, rtol=1e-5)
  block = params["snail"]["attention0"]
  dense = lambda v, name: v @ block[name]["kernel"] + block[name]["bias"]
  prefix = np.concatenate([state["features"], state["labels"]], axis=-1)
  feats = embed_each(FlatDense(), params["embed"], ep.query_x)
  queries = np.concatenate([feats, np.zeros((6, 3), np.float32)], axis=-1)
  q = dense(queries, "query")
  logits = np.concatenate(
    [
      q @ dense(prefix, "key").T,
      np.sum(q * dense(queries, "key"), -1)[:, None],
    ],
    -1,
  )
  np.testing.assert_allclose(
    weights[0], jax.nn.softmax(logits / 2.0, -1), rtol=1e-5, atol=1e-6
  )  # sqrt(K = 4) = 2


def test_mann_online_loss_is_the_loss_of_every_step_of_the_episode(tiny):
  """online_loss=True: the task loss is the cross-entropy of every step of
  support + queries in one random order (labels one step late), so a
  support label is a target too; the default has no task_loss."""
  learner, params, _ = tiny["mann"]
  assert learner.task_loss is None
  online_learner = mann(FlatDense(), ways=3, online_loss=True, **TINY_MANN)
  online = online_logits_fn(FlatDense(), ways=3, **TINY_MANN)
  ep = tiny_episode(ways=3, shots=1, queries=2)
  key = jax.random.key(3)
  loss, accuracy = jax.jit(online_learner.task_loss)(params, ep, key)
  x = np.concatenate([ep.support_x, ep.query_x])
  y = np.concatenate([ep.support_y, ep.query_y])
  order = np.asarray(jax.random.permutation(key, len(y)))
  logits = online(params, x[order], y[order])
  log_p = jax.nn.log_softmax(logits)
  np.testing.assert_allclose(
    loss, -np.mean(np.take_along_axis(log_p, y[order][:, None], 1)), rtol=1e-5
  )
  np.testing.assert_allclose(accuracy, np.mean(logits.argmax(-1) == y[order]))
  flipped = ep._replace(support_y=(ep.support_y + 1) % 3)
  assert abs(online_learner.task_loss(params, flipped, key)[0] - loss) > 1e-4


def test_mann_writes_its_add_vectors_or_its_keys():
  ep = tiny_episode(ways=3, shots=2, queries=1)
  key = jax.random.key(4)
  memory = {}
  for add_vectors in (True, False):
    learner = mann(FlatDense(), ways=3, add_vectors=add_vectors, **TINY_MANN)
    params = learner.init(jax.random.key(0), ep)
    assert ("adds" in params["controller"]) == add_vectors
    if add_vectors:  # zero add vectors: nothing but zeros is written
      params["controller"]["adds"] = jax.tree.map(
        jnp.zeros_like, params["controller"]["adds"]
      )
    memory[add_vectors] = np.asarray(
      learner.adapt(params, (ep.support_x, ep.support_y), key).memory
    )
  # Every slot is still the initial 1e-6 or erased to 0 ...
  assert np.isin(memory[True], np.float32([0.0, 1e-6])).all()
  # ... where writing the keys (tanh, nonzero) fills slots.
  assert np.abs(memory[False]).max() > 1e-3


def test_mann_key_strength_sharpens_its_reads():
  ep = tiny_episode(ways=3, shots=2, queries=1)
  learner = mann(FlatDense(), ways=3, **TINY_MANN)
  params = learner.init(jax.random.key(0), ep)
  assert "strengths" in params["controller"]
  assert (
    "strengths"
    not in mann(FlatDense(), ways=3, key_strength=False, **TINY_MANN).init(
      jax.random.key(0), ep
    )["controller"]
  )
  peak = {}
  for bias in (-30.0, 30.0):  # beta = 1 + softplus(bias): 1 or about 31
    p = jax.tree.map(lambda a: a, params)
    p["controller"]["strengths"] = {
      "kernel": jnp.zeros_like(params["controller"]["strengths"]["kernel"]),
      "bias": jnp.full_like(params["controller"]["strengths"]["bias"], bias),
    }
    state = learner.adapt(p, (ep.support_x, ep.support_y), jax.random.key(1))
    peak[bias] = float(jnp.max(state.read_weights))
  # Cosines in [-1, 1] over 6 slots: at most e^2 / (e^2 + 5) ~ 0.6 unscaled.
  assert peak[-30.0] < 0.6 < peak[30.0]


def test_mann_is_causal_and_sees_only_earlier_labels(tiny):
  online = jax.jit(online_logits_fn(FlatDense(), ways=3, **TINY_MANN))
  _, params, _ = tiny["mann"]
  ep = tiny_episode(ways=3, shots=2)
  x, y = ep.support_x, ep.support_y
  base = np.asarray(online(params, x, y))
  j = 2
  other_x = np.asarray(online(params, _with(x, j, 255 - x[j]), y))
  np.testing.assert_array_equal(other_x[:j], base[:j])
  assert np.abs(other_x[j] - base[j]).max() > 0
  other_y = np.asarray(online(params, x, _with(y, j, (y[j] + 1) % 3)))
  np.testing.assert_array_equal(
    other_y[: j + 1], base[: j + 1]
  )  # y_j unseen at j
  assert np.abs(other_y[j + 1] - base[j + 1]).max() > 0


def _with(a, index, value):
  a = np.array(a)
  a[index] = value
  return a


@pytest.mark.parametrize("name", ["mann", "snail"])
def test_queries_are_independent(name, tiny):
  _, params, run = tiny[name]
  ep = tiny_episode(ways=3, shots=1, queries=2)
  key = jax.random.key(1)
  base = np.asarray(run(params, ep.support, ep.query_x, key))
  other = _with(ep.query_x, 0, 255 - ep.query_x[0])
  changed = np.asarray(run(params, ep.support, other, key))
  np.testing.assert_allclose(changed[1:], base[1:], rtol=1e-6, atol=1e-6)
  assert np.abs(changed[0] - base[0]).max() > 1e-6
  # Alone, a query gets the same prediction as among the others.
  alone = np.asarray(run(params, ep.support, ep.query_x[3:4], key))
  np.testing.assert_allclose(alone[0], base[3], rtol=1e-5, atol=1e-6)


def blackbox_config(name):
  module = {"mann": mann_omniglot, "snail": snail_omniglot}[name]
  config = module.get_config("smoke")
  config.update(dict(ways=3, image_size=16))  # four 2x2 max-pools
  config.model_kwargs.filters = 4
  config.learner_kwargs.update(TINY_MANN if name == "mann" else TINY_SNAIL)
  return config


@pytest.mark.parametrize("name", ["mann", "snail"])
def test_blackbox_contract(name):
  learner = tiny_learner(name)
  ep = tiny_episode(ways=3)
  batch = jax.tree.map(lambda x: np.stack([x, x]), ep)
  meta0 = check_meta_training(learner, batch)
  assert set(meta0) == {"embed", "controller" if name == "mann" else "snail"}
  # The config path builds the same kind of learner (shapes only: no compile).
  config = blackbox_config(name)
  built = from_config.build_learner(config)
  shapes = jax.eval_shape(
    built.init, jax.random.key(0), tiny_episode(ways=3, size=config.image_size)
  )
  assert set(shapes) == set(meta0)
  # The paper's embedding: each conv with its (per-image) batch norm.
  assert set(shapes["embed"]) == {
    f"{layer}{i}" for i in range(4) for layer in ("conv", "norm")
  }


class ConvNorm(nn.Module):
  """One conv and a batch-statistics norm: features depend on the batch."""

  @nn.compact
  def __call__(self, x):
    x = models.Conv(2, (3, 3), padding="SAME", use_bias=False)(x)
    return models.BatchStatNorm()(x).reshape(x.shape[0], -1)


def test_embed_each_embeds_examples_alone():
  embedding = ConvNorm()
  x = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 1), np.uint8)
  params = embedding.init(jax.random.key(0), x[:1] / 255.0)["params"]
  embed = jax.jit(lambda p, v: embed_each(embedding, p, v))
  together = np.asarray(embed(params, x))
  alone = np.asarray(embed(params, x[:1]))
  np.testing.assert_allclose(together[0], alone[0], rtol=1e-5, atol=1e-5)
  # Standardized over features: zero mean, unit variance per example.
  np.testing.assert_allclose(together.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(together.std(-1), 1.0, rtol=1e-3)
  batch_stats = np.asarray(embedding.apply({"params": params}, x / 255.0))
  batch_stats = (batch_stats - batch_stats.mean(-1, keepdims=True)) / (
    batch_stats.std(-1, keepdims=True)
  )
  assert np.abs(batch_stats[0] - together[0]).max() > 1e-3


def test_validation_of_blackbox_configs():
  config = snail_omniglot.get_config("smoke")
  config.test_shots = 5
  with pytest.raises(ValueError, match="test_shots"):
    from_config.validate(config)
  config = mann_omniglot.get_config("smoke")
  config.test_ways = 20
  with pytest.raises(ValueError, match="test_ways"):
    from_config.validate(config)
  config = mann_omniglot.get_config("smoke")
  config.learner_kwargs.gamma = 1.5
  with pytest.raises(ValueError, match="gamma"):
    from_config.validate(config)
  with pytest.raises(ValueError, match="online_loss must be a bool"):
    mann(FlatDense(), ways=3, online_loss=1)
  for field in ("add_vectors", "key_strength"):
    with pytest.raises(ValueError, match=f"{field} must be a bool"):
      mann(FlatDense(), ways=3, **{field: "yes"})
    config = mann_omniglot.get_config("smoke")
    with config.learner_kwargs.ignore_type():
      config.learner_kwargs[field] = 1
    with pytest.raises(ValueError, match=field):
      from_config.validate(config)
    # A config without the option has the factory's default (on); a run
    # written before the option existed had the paper's model, which the
    # conversion of its config.json keeps.
    del config.learner_kwargs[field]
    assert from_config.with_option_defaults(config).learner_kwargs[field]
    legacy = {"learner": "mann", "dataset": "omniglot", "model": "conv4"}
    assert legacy_configs.convert(legacy)["learner_kwargs"][field] is False
  with pytest.raises(ValueError, match="Unknown variant"):
    mann_omniglot.get_config("20w1s")


@pytest.mark.parametrize("name", ["mann_omniglot", "snail_omniglot"])
def test_config_smoke_runs_and_loads(name, tmp_path, omniglot_data_dir, caplog):
  config = importlib.import_module(f"experiments.configs.{name}").get_config(
    "smoke"
  )
  config.data_dir = omniglot_data_dir
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    results = runs.train_and_evaluate(config, str(tmp_path))
  # The meta-step compiles once (the initial state is committed like the
  # step's outputs).
  assert (
    sum("Compiling jit(step)" in r.getMessage() for r in caplog.records) == 1
  )
  assert results["config"]["learner"] == config.learner
  assert results["episodes"] == config.eval_episodes
  assert 0.0 <= results["mean"] <= 1.0
  run = runs.load_run(str(tmp_path))
  ways, size = config.ways, config.image_size
  support = np.zeros((ways * config.shots, size, size, 1), np.uint8)
  labels = np.repeat(np.arange(ways), config.shots)
  logits = runs.predict(run, support, labels, support[:2])
  assert logits.shape == (2, ways) and np.isfinite(logits).all()
  # MANN's by-instance protocol on the finished run (SNAIL's is refused).
  plot = tmp_path / "by_instance.png"
  args = [
    sys.executable,
    "-m",
    "experiments.mann_instances",
    f"--workdir={tmp_path}",
    "--episodes=3",
    "--instances=3",
    f"--plot={plot}",
  ]
  proc = subprocess.run(
    args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
  )
  if name == "snail_omniglot":
    assert proc.returncode == 1 and "is a snail run" in proc.stderr
    return
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = json.loads(proc.stdout.splitlines()[-1])
  assert (line["episodes"], line["ways"], line["instances"]) == (3, ways, 3)
  assert sorted(
    k for k in line if k.startswith("instance_") and not k.endswith("ci95")
  ) == [f"instance_{k}" for k in (1, 2, 3)]
  assert all(0.0 <= line[f"instance_{k}"] <= 1.0 for k in (1, 2, 3))
  assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
