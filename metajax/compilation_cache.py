"""JAX's persistent compilation cache, for the experiment binaries.

Compiling a second-order MAML step for Conv4 takes seconds and, on CPU, about
300 MB of compiler memory at its peak. With the cache on, a later process
that compiles the same program (the same run resumed, evaluated, or started
again) loads the executable from disk instead, which saves the compile time
and the compiler's memory (measured in docs/benchmark.md).
"""

import os
from typing import Optional

import jax

ENV = "METAJAX_COMPILATION_CACHE"


def default_dir() -> str:
  """$METAJAX_COMPILATION_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/metajax/jax."""
  if os.environ.get(ENV):
    return os.path.expanduser(os.environ[ENV])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache"
  )
  return os.path.join(base, "metajax", "jax")


def enable(
  directory: Optional[str] = None,
  min_compile_secs: float = 1.0,
  max_size_bytes: int = 2 << 30,
) -> str:
  """Caches compiled XLA programs in `directory` (default `default_dir()`).

  A size bound makes JAX evict the least recently used entries and guard
  each read and write with a file lock, so processes that share the folder
  (parallel runs, test workers) never read a half-written entry.

  Args:
    directory: the cache folder (created if missing).
    min_compile_secs: programs that compile faster than this are not cached
      (JAX's default, 1 s, keeps the many tiny programs out).
    max_size_bytes: the folder's size bound (default 2 GiB).

  Returns:
    The folder used.
  """
  if not isinstance(min_compile_secs, (int, float)) or min_compile_secs < 0:
    raise ValueError(
      f"min_compile_secs must be a number >= 0, got {min_compile_secs!r}."
    )
  if not isinstance(max_size_bytes, int) or max_size_bytes < 1:
    raise ValueError(
      f"max_size_bytes must be an integer >= 1, got {max_size_bytes!r}."
    )
  directory = os.path.abspath(os.path.expanduser(directory or default_dir()))
  os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update(
    "jax_persistent_cache_min_compile_time_secs", float(min_compile_secs)
  )
  jax.config.update("jax_compilation_cache_max_size", int(max_size_bytes))
  return directory
