"""Whether a compiled step fits: XLA's estimate against free device memory.

Kept apart from `step` (which builds the programs): these read a compiled
program's analysis and the machine's state, for the trainer's check before the
first step and for the benchmark.
"""

from typing import Optional

import jax


class StepMemoryError(MemoryError):
  """The compiled meta-step needs more memory than the device has free."""


def available_memory_bytes(device: jax.Device) -> Optional[int]:
  """Free memory of `device` in bytes, or None where it cannot be told.

  Accelerators report their allocator's limit and use; for the CPU it is the
  machine's MemAvailable (/proc/meminfo).
  """
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
  if device.platform == "cpu":
    try:
      with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
          if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    except OSError:
      pass
  return None


def step_memory_bytes(compiled) -> Optional[int]:
  """XLA's estimate of the memory a compiled step allocates per device.

  Temporaries plus outputs, less outputs that reuse (donated) inputs; the
  inputs themselves are already allocated. None if XLA gives no analysis.
  """
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if stats is None:
    return None
  return int(
    stats.temp_size_in_bytes
    + stats.output_size_in_bytes
    - stats.alias_size_in_bytes
  )


def check_step_fits(
  compiled, device: jax.Device, available: Optional[int] = None
) -> Optional[int]:
  """Raises `StepMemoryError` if the compiled step will not fit on `device`.

  Args:
    compiled: a compiled meta-step
      (`step.make_meta_step(...).lower(...).compile()`).
    device: where it runs (each device of a mesh runs the same share).
    available: free bytes (default: `available_memory_bytes(device)`).

  Returns:
    The step's estimated bytes (None when XLA or the device tells nothing, in
    which case nothing is checked).
  """
  needed = step_memory_bytes(compiled)
  if available is None:
    available = available_memory_bytes(device)
  if needed is not None and available is not None and needed > available:
    raise StepMemoryError(
      f"The meta-step needs about {needed / 2**20:.0f} MB on {device} "
      f"(XLA's estimate for the compiled step: temporaries and outputs) but "
      f"only {available / 2**20:.0f} MB are free. Process the meta-batch in "
      "chunks (tasks_per_chunk, config.tasks_per_chunk), lower "
      "meta_batch_size, shard it over more devices, or for many inner "
      "steps rematerialize them (remat=True)."
    )
  return needed
