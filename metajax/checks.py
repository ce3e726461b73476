"""Argument checks shared by every factory, sampler and loader.

Each check raises `ValueError` with one line that names the argument, says
what is allowed and shows the value it got, e.g.

    inner_lr must be a finite number > 0, got inf.

and returns the value (converted to a plain Python int or float), so a
factory can check and keep in one line: `steps = checks.integer("steps",
steps, minimum=1)`.
"""

import math
import numbers
from typing import Any, Iterable, Literal, Optional, overload

import numpy as np


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field (raised by
  `metajax.from_config` and the data it builds)."""


def is_int(value: Any) -> bool:
  """True for Python and numpy integers, False for bools (and all else)."""
  return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
    value, (bool, np.bool_)
  )


def is_number(value: Any) -> bool:
  """True for finite real numbers (ints and floats, numpy's too), not bools."""
  return (
    isinstance(value, (numbers.Real, np.integer, np.floating))
    and not isinstance(value, (bool, np.bool_))
    and math.isfinite(value)
  )


# The overloads tell a type checker that a check without `optional=True`
# never returns None.
@overload
def integer(
  name: str,
  value: Any,
  *,
  minimum: Optional[int] = None,
  optional: Literal[False] = False,
) -> int: ...


@overload
def integer(
  name: str,
  value: Any,
  *,
  minimum: Optional[int] = None,
  optional: bool = False,
) -> Optional[int]: ...


def integer(
  name: str,
  value: Any,
  *,
  minimum: Optional[int] = None,
  optional: bool = False,
) -> Optional[int]:
  """`value` as an int, if it is an integer >= `minimum` (None if `optional`).

  Raises:
    ValueError: "`name` must be an integer >= minimum, got value."
  """
  if value is None and optional:
    return None
  if not is_int(value) or (minimum is not None and value < minimum):
    what = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    raise ValueError(
      f"{name} must be {'None or ' if optional else ''}{what}, got {value!r}."
    )
  return int(value)


@overload
def positive(
  name: str, value: Any, *, optional: Literal[False] = False
) -> float: ...


@overload
def positive(
  name: str, value: Any, *, optional: bool = False
) -> Optional[float]: ...


def positive(
  name: str, value: Any, *, optional: bool = False
) -> Optional[float]:
  """`value` as a float, if it is a finite number > 0 (None if `optional`).

  Rates, scales and step sizes: NaN, infinities, zero, negatives and bools
  are refused.
  """
  if value is None and optional:
    return None
  if not is_number(value) or value <= 0:
    raise ValueError(
      f"{name} must be {'None or ' if optional else ''}a finite "
      f"number > 0, got {value!r}."
    )
  return float(value)


@overload
def number(
  name: str,
  value: Any,
  *,
  low: Optional[float] = None,
  high: Optional[float] = None,
  optional: Literal[False] = False,
) -> float: ...


@overload
def number(
  name: str,
  value: Any,
  *,
  low: Optional[float] = None,
  high: Optional[float] = None,
  optional: bool = False,
) -> Optional[float]: ...


def number(
  name: str,
  value: Any,
  *,
  low: Optional[float] = None,
  high: Optional[float] = None,
  optional: bool = False,
) -> Optional[float]:
  """`value` as a float, if it is a finite number in [low, high]."""
  if value is None and optional:
    return None
  if (
    not is_number(value)
    or (low is not None and value < low)
    or (high is not None and value > high)
  ):
    if low is not None and high is not None:
      where = f" in [{low}, {high}]"
    elif low is not None:
      where = f" >= {low}"
    elif high is not None:
      where = f" <= {high}"
    else:
      where = ""
    raise ValueError(
      f"{name} must be {'None or ' if optional else ''}a finite "
      f"number{where}, got {value!r}."
    )
  return float(value)


def boolean(name: str, value: Any) -> bool:
  """`value` as a bool, if it is one (numpy's too); 0 and 1 are refused."""
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{name} must be a bool (True or False), got {value!r}.")
  return bool(value)


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
  """`value`, if it is one of `choices`."""
  choices = tuple(choices)
  if value not in choices:
    raise ValueError(
      f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}."
    )
  return value
