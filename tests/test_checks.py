"""metajax.checks: the argument checks every factory shares."""

import math

import numpy as np
import pytest

from metajax import checks


@pytest.mark.parametrize("value", [1, np.int32(3), np.int64(0)])
def test_is_int_accepts_integers(value):
  assert checks.is_int(value)


@pytest.mark.parametrize("value", [True, np.bool_(True), 1.0, "1", None])
def test_is_int_refuses_bools_floats_and_others(value):
  assert not checks.is_int(value)


def test_integer_returns_python_int_and_names_the_argument():
  assert checks.integer("steps", np.int64(4), minimum=1) == 4
  assert type(checks.integer("steps", np.int64(4), minimum=1)) is int
  assert checks.integer("n", None, optional=True) is None
  with pytest.raises(
    ValueError, match=r"^steps must be an integer >= 1, got 0\.$"
  ):
    checks.integer("steps", 0, minimum=1)
  with pytest.raises(
    ValueError, match=r"must be None or an integer >= 0, got True"
  ):
    checks.integer("n", True, minimum=0, optional=True)
  with pytest.raises(ValueError, match="got None"):
    checks.integer("n", None)


@pytest.mark.parametrize(
  "value", [0, -1.0, math.inf, math.nan, True, "0.1", None]
)
def test_positive_refuses_non_finite_zero_negative_and_non_numbers(value):
  with pytest.raises(
    ValueError, match=r"^inner_lr must be a finite number > 0"
  ):
    checks.positive("inner_lr", value)


def test_positive_and_number_return_floats():
  assert checks.positive("lr", np.float32(0.5)) == 0.5
  assert checks.positive("lr", None, optional=True) is None
  assert checks.number("gamma", 1, low=0, high=1) == 1.0
  with pytest.raises(
    ValueError,
    match=r"gamma must be a finite number in "
    r"\[0, 1\], got 1\.5",
  ):
    checks.number("gamma", 1.5, low=0, high=1)
  with pytest.raises(ValueError, match=">= 0"):
    checks.number("decay", -1e-3, low=0)


def test_boolean_and_one_of():
  assert checks.boolean("fce", np.bool_(False)) is False
  with pytest.raises(
    ValueError, match=r"fce must be a bool \(True or False\), got 1"
  ):
    checks.boolean("fce", 1)
  assert (
    checks.one_of("distance", "cosine", ("euclidean", "cosine")) == "cosine"
  )
  with pytest.raises(
    ValueError,
    match="distance must be one of 'euclidean', 'cosine'; got 'manhattan'",
  ):
    checks.one_of("distance", "manhattan", ("euclidean", "cosine"))
