"""Property-based (hypothesis): confidence_interval and evaluate's
statistics, checked against independent computations; evaluate's bad counts.

Each test backs a row of docs/reliability.md.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from metajax import evaluate as eval_lib
from metajax.data.episodes import step_rng
from metajax.data.sinusoid import SinusoidSampler
from metajax.types import Learner

from tests.helpers import PROPERTY


# ------------------------------------- property-based: evaluation statistics

FINITE = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def reference_ci(values):
  n = len(values)
  mean = math.fsum(values) / n
  return (
    1.96
    * math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    / math.sqrt(n)
  )


@PROPERTY
@given(st.lists(FINITE, min_size=1, max_size=60))
def test_ci_is_196_std_over_sqrt_n(values):
  assert eval_lib.confidence_interval(values) == pytest.approx(
    reference_ci(values), rel=1e-9, abs=1e-9
  )


@PROPERTY
@given(FINITE, st.integers(1, 60))
def test_ci_of_constant_values_is_zero(value, n):
  assert eval_lib.confidence_interval([value] * n) == pytest.approx(
    0.0, abs=1e-12 * max(1.0, abs(value))
  )


@PROPERTY
@given(
  st.lists(FINITE, min_size=1, max_size=60),
  FINITE,
  st.floats(-100, 100, allow_nan=False),
)
def test_ci_ignores_shifts_and_scales_linearly(values, shift, scale):
  ci = eval_lib.confidence_interval(values)
  shifted = eval_lib.confidence_interval([v + shift for v in values])
  scaled = eval_lib.confidence_interval([v * scale for v in values])
  assert shifted == pytest.approx(ci, rel=1e-6, abs=1e-9)
  assert scaled == pytest.approx(abs(scale) * ci, rel=1e-6, abs=1e-9)


def test_ci_rejects_empty_input():
  with pytest.raises(ValueError, match="at least one value"):
    eval_lib.confidence_interval([])


def zero_regressor():
  """Predicts 0, so an episode's MSE is the mean of its squared targets."""
  mse = lambda out, y: jnp.mean(jnp.square(out - y))
  return Learner(
    init=lambda key, episode: {"b": jnp.zeros(())},
    adapt=lambda params, support, key: params["b"],
    predict=lambda params, b, x: jnp.zeros_like(x) + b,
    loss=mse,
    metric=mse,
    metric_name="mse",
  )


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 40), st.integers(1, 16), st.integers(0, 100))
def test_evaluate_statistics(episodes, batch_size, seed):
  source = SinusoidSampler(shots=2, queries=3)
  result = eval_lib.evaluate(
    zero_regressor(),
    {"b": jnp.zeros(())},
    source,
    episodes=episodes,
    batch_size=batch_size,
    seed=seed,
  )
  # Independently: batch i of min(batch_size, episodes) tasks comes from
  # step_rng(seed, i); each task's MSE is mean(query_y ** 2).
  size = min(batch_size, episodes)
  expected = np.concatenate(
    [
      np.mean(
        np.square(
          source.sample_batch(step_rng(seed, i), size).query_y.astype(
            np.float64
          )
        ),
        axis=(1, 2),
      )
      for i in range(-(-episodes // size))
    ]
  )[:episodes]
  assert result.episodes == episodes and result.values.shape == (episodes,)
  np.testing.assert_allclose(result.values, expected, rtol=1e-5)
  assert result.mean == pytest.approx(np.mean(expected), rel=1e-5)
  assert result.ci95 == pytest.approx(
    reference_ci(list(result.values)), rel=1e-9, abs=1e-12
  )


@pytest.mark.parametrize(
  "kwargs",
  [dict(episodes=0), dict(batch_size=0)],
  ids=["episodes=0", "batch_size=0"],
)
def test_evaluate_rejects_bad_counts(kwargs):
  args = dict(episodes=5, batch_size=5)
  args.update(kwargs)
  with pytest.raises(ValueError, match=next(iter(kwargs))):
    eval_lib.evaluate(
      zero_regressor(),
      {"b": jnp.zeros(())},
      SinusoidSampler(shots=1, queries=1),
      **args,
    )
