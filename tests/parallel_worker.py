"""Run by tests/test_parallel.py in a process that sees 8 CPU devices.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/parallel_worker.py

Checks the data-parallel meta-step against the one-device step and prints
"OK" and one JSON line of measurements; any failed check raises.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metajax import parallel
from metajax import step as step_lib
from metajax import train
from metajax.data.sinusoid import SinusoidSampler
from metajax.learners.maml import maml
from metajax.learners.reptile import reptile
from metajax.models.mlp import MLP


def close(a, b, tol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def main():
  assert len(jax.devices()) == 8, jax.devices()
  source = SinusoidSampler(shots=5, queries=5)
  batch = source.sample_batch(np.random.default_rng(0), 16)
  key = jax.random.key(3)
  outer = optax.adam(1e-2)
  out = {}
  for name, learner, cases in (
    (
      "maml",
      maml(MLP(1, (16, 16)), inner_lr=0.01, task="regression"),
      ((1, None), (8, None), (4, 2)),
    ),
    (
      "reptile",
      reptile(
        MLP(1, (16, 16)), inner_lr=0.01, inner_steps=2, task="regression"
      ),
      ((1, None), (8, 1)),
    ),
  ):
    state = jax.jit(
      lambda k, b, l=learner: step_lib.init_train_state(l, outer, k, b)
    )(jax.random.key(0), batch)
    results = {}
    for devices, chunk in cases:
      mesh = parallel.task_mesh(devices)
      step = step_lib.make_meta_step(
        learner, outer, mesh=mesh, tasks_per_chunk=chunk
      )
      sharded = parallel.put_batch(batch, mesh)
      # Each device holds its own 16 / devices tasks.
      shapes = {s.data.shape[0] for s in sharded.support_x.addressable_shards}
      assert shapes == {16 // devices}, shapes
      # (a copy: the step donates its input state)
      if devices == 8 and chunk is None:
        # One all-reduce of the gradient; the batch is never gathered.
        hlo = step.lower(state, sharded, key).compile().as_text()
        assert "all-reduce" in hlo and "all-gather" not in hlo
      new_state, metrics = step(
        parallel.put_replicated(jax.tree.map(jnp.copy, state), mesh),
        sharded,
        key,
      )
      leaf = jax.tree.leaves(new_state.meta_params)[0]
      assert leaf.sharding.is_fully_replicated
      assert len(leaf.sharding.device_set) == devices
      results[(devices, chunk)] = (
        parallel.local_copy(new_state.meta_params),
        float(metrics["loss"]),
      )
    reference = results[(1, None)]
    for params, loss in results.values():
      close(params, reference[0])
      assert abs(loss - reference[1]) < 1e-5 * max(1.0, abs(reference[1]))
    moved = max(
      float(jnp.abs(a - b).max())
      for a, b in zip(
        jax.tree.leaves(reference[0]), jax.tree.leaves(state.meta_params)
      )
    )
    assert moved > 1e-4, moved  # the step did something
    out[name] = {"loss": reference[1], "moved": moved}

  # meta_train: 2 steps on 8 devices (default mesh) = 2 steps on one.
  learner = maml(MLP(1, (16, 16)), inner_lr=0.01, task="regression")
  final = {}
  for devices in (8, 1):
    state = train.meta_train(
      learner,
      source,
      outer_opt=outer,
      num_steps=2,
      meta_batch_size=8,
      seed=1,
      mesh=None if devices == 8 else parallel.task_mesh(1),
    )
    final[devices] = parallel.local_copy(state.meta_params)
  close(final[8], final[1])

  try:
    train.meta_train(
      learner, source, outer_opt=outer, num_steps=1, meta_batch_size=12, seed=1
    )
  except ValueError as e:
    assert "does not divide by the 8 devices" in str(e), e
    out["error"] = str(e)
  else:
    raise AssertionError("meta_batch_size 12 on 8 devices was accepted")
  print("OK")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
