"""The layout rule of the redesign (docs/design.md): no module of metajax/
over 400 lines and no function over 80 lines, its docstring aside (nested
functions count toward the function that holds them). ruff's formatter
decides the layout, so the rule is checked on the formatted code."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "metajax"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def function_lengths(source: str):
  """(name, lines without the docstring) for every function in `source`."""
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      lines = node.end_lineno - node.lineno + 1
      first = node.body[0]
      if isinstance(first, ast.Expr) and isinstance(
        getattr(first, "value", None), ast.Constant
      ):
        if isinstance(first.value.value, str):
          lines -= first.end_lineno - first.lineno + 1
      yield node.name, lines


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize(
  "path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES]
)
def test_modules_and_functions_are_within_the_limits(path):
  source = path.read_text()
  assert len(source.splitlines()) <= MAX_MODULE_LINES
  too_long = {
    name: lines
    for name, lines in function_lengths(source)
    if lines > MAX_FUNCTION_LINES
  }
  assert not too_long


def test_the_counter_counts_a_nested_function_and_skips_the_docstring():
  source = (
    'def outer():\n  """Doc\n  string."""\n'
    "  def inner():\n    return 1\n  return inner\n"
  )
  assert dict(function_lengths(source)) == {"outer": 4, "inner": 2}
