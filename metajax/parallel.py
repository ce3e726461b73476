"""Data parallelism over the task axis: a device mesh, shardings, several hosts.

A meta-batch is a pytree whose leaves have a leading task axis. Training
shards that axis over a one-axis `jax.sharding.Mesh` of devices (axis name
"tasks"); meta-parameters and optimizer state are replicated. The mean over
tasks in the meta-loss then needs one all-reduce of the gradient, which XLA
inserts, so every device ends the step with the same meta-parameters.

With several processes (hosts), call `initialize_distributed` first; the mesh
then spans every process's devices, each process samples its own share of
the meta-batch (`process_rng`) and `put_batch` assembles the global array.

    mesh = parallel.task_mesh()              # all devices
    state = parallel.put_replicated(state, mesh)
    batch = parallel.put_batch(local_batch, mesh)
"""

from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metajax.data import episodes

TASK_AXIS = "tasks"


def initialize_distributed(
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
) -> None:
  """Starts JAX's multi-process runtime (`jax.distributed.initialize`).

  Arguments left None are taken from the environment where JAX knows how to
  (e.g. SLURM or Cloud TPU); elsewhere give all three. Call it once per
  process, before anything else touches a device.

  Args:
    coordinator_address: "host:port" of process 0's coordinator.
    num_processes: how many processes take part.
    process_id: this process's index, 0 <= process_id < num_processes.
  """
  given = [
    a is not None for a in (coordinator_address, num_processes, process_id)
  ]
  if any(given) and not all(given):
    raise ValueError(
      "Give all of coordinator_address, num_processes and process_id, or "
      "none of them (to read them from the environment); got "
      f"coordinator_address={coordinator_address!r}, "
      f"num_processes={num_processes!r}, process_id={process_id!r}."
    )
  if (
    num_processes is not None
    and process_id is not None
    and not 0 <= process_id < num_processes
  ):
    raise ValueError(
      f"process_id must be in [0, {num_processes}), got {process_id}."
    )
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
  )


def task_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A one-axis mesh ("tasks") of `num_devices` devices (default: all).

  With several processes the mesh must hold every process's devices, so
  `num_devices` must then be None or the global device count.
  """
  devices = jax.devices()
  if num_devices is None:
    num_devices = len(devices)
  if not isinstance(num_devices, (int, np.integer)) or not (
    1 <= num_devices <= len(devices)
  ):
    raise ValueError(
      f"num_devices must be an integer in [1, {len(devices)}] "
      f"(the devices JAX sees), got {num_devices!r}."
    )
  if jax.process_count() > 1 and num_devices != len(devices):
    raise ValueError(
      f"With {jax.process_count()} processes the mesh must use all "
      f"{len(devices)} devices, got num_devices={num_devices}."
    )
  return Mesh(np.asarray(devices[:num_devices]), (TASK_AXIS,))


def task_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (task) axis split over the mesh, the other axes whole."""
  return NamedSharding(mesh, PartitionSpec(TASK_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def check_meta_batch_size(meta_batch_size: int, mesh: Mesh) -> int:
  """Raises ValueError unless the tasks split evenly over devices and hosts.

  Returns:
    The number of tasks this process samples per step.
  """
  devices, processes = mesh.devices.size, jax.process_count()
  if meta_batch_size % devices:
    raise ValueError(
      f"meta_batch_size {meta_batch_size} does not divide by the "
      f"{devices} devices of the mesh: use a multiple of {devices} (e.g. "
      f"{max(devices, meta_batch_size // devices * devices)}), or fewer "
      "devices (config.num_devices)."
    )
  if meta_batch_size % processes:
    raise ValueError(
      f"meta_batch_size {meta_batch_size} does not divide by "
      f"the {processes} processes."
    )
  return meta_batch_size // processes


def process_rng(seed: int, step: int) -> np.random.Generator:
  """This process's host generator for one step.

  With one process it is `episodes.step_rng(seed, step)`, so single-host runs
  sample the same episodes whatever the device count. With several, each
  process draws from its own stream, a pure function of (seed, step,
  process index): the global meta-batch is as random as a single host's.
  """
  if jax.process_count() == 1:
    return episodes.step_rng(seed, step)
  return np.random.default_rng([int(seed), int(step), jax.process_index()])


def put_batch(local_batch: Any, mesh: Mesh) -> Any:
  """This process's share of a meta-batch -> global arrays sharded on tasks."""
  sharding = task_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch
  )


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """A pytree (the same on every process) copied to every device of `mesh`."""
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
    tree,
  )


def local_copy(tree: Any) -> Any:
  """Replicated arrays -> single-device arrays on this process's first device.

  For work that each process does alone (validation, evaluation), so that it
  runs once rather than on every device of the mesh.
  """
  device = jax.local_devices()[0]

  def one(x):
    if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
      if not x.sharding.is_fully_replicated:
        raise ValueError(
          f"local_copy takes replicated arrays, got one "
          f"sharded as {x.sharding}."
        )
      for shard in x.addressable_shards:
        if shard.device == device:
          return shard.data
      return jax.device_put(x.addressable_data(0), device)
    return x

  return jax.tree.map(one, tree)
