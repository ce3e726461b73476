"""The compilation-cache flags shared by the experiment binaries."""

from absl import flags

from metajax import compilation_cache

CACHE_DIR = flags.DEFINE_string(
  "compilation_cache_dir",
  None,
  "JAX's persistent compilation cache: a "
  "later run of the same program loads it instead of compiling (faster, "
  "and without the compiler's memory peak). Default: "
  f"${compilation_cache.ENV} or ~/.cache/metajax/jax; '' turns it off.",
)
CACHE_MIN_SECS = flags.DEFINE_float(
  "compilation_cache_min_secs",
  1.0,
  "Cache only programs whose compile takes at least this many seconds.",
)


def apply() -> None:
  """Turns the cache on as the flags say (call before compiling anything)."""
  if CACHE_DIR.value == "":
    return
  compilation_cache.enable(CACHE_DIR.value, CACHE_MIN_SECS.value)
