"""The docs: every row of docs/reliability.md's tables names tests that exist;
every public module of metajax has an API page (an `automodule` under docs/),
and every public function and class a docstring.
"""

import dataclasses
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

from tests.conftest import REPO


# ------------------------------------------------------ the docs' table


def test_every_row_of_the_reliability_table_names_existing_tests():
  text = (REPO / "docs" / "reliability.md").read_text()
  rows = [
    line
    for line in text.splitlines()
    if line.startswith("| ")
    and not line.startswith("| ---")
    and not line.startswith(("| input tried", "| fault tried", "| property |"))
  ]
  assert len(rows) > 50
  refs = []
  for row in rows:
    cell = row.rstrip(" |").split(" | ")[-1]
    found, last = [], None
    for token in re.findall(r"`([^`]+)`", cell):
      named = re.fullmatch(r"([a-z_]+\.py)::(test_\w+)(\[.*\])?", token)
      if named:
        last = named.group(1), named.group(2)
        found.append((*last, named.group(3) or ""))
      elif re.fullmatch(r"\[.*\]", token) and last:
        found.append((*last, token))
    assert found, f"row without a test: {row}"
    refs += found
  ids = subprocess.run(
    [
      sys.executable,
      "-m",
      "pytest",
      "--collect-only",
      "-q",
      "-p",
      "no:cacheprovider",
      "tests/",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  ).stdout.splitlines()
  for file, name, case in refs:
    prefix = f"tests/{file}::{name}"
    matching = [i for i in ids if i == prefix or i.startswith(prefix + "[")]
    assert matching, f"{prefix} is not a test"
    if case and "*" not in case and "..." not in case:
      assert f"{prefix}{case}" in ids, f"{prefix}{case} is not a test"


# ------------------------------------------------------------ API pages


def public_modules(path=REPO / "metajax", prefix="metajax"):
  """The package and its modules whose names start with no underscore, found
  with pkgutil without importing them."""
  names = [prefix]
  for info in pkgutil.iter_modules([str(path)]):
    if info.name.startswith("_"):
      continue
    if info.ispkg:
      names += public_modules(path / info.name, f"{prefix}.{info.name}")
    else:
      names.append(f"{prefix}.{info.name}")
  return names


def documented_modules():
  """Module names of the `automodule` directives under docs/ (reST, and
  MyST's ```{automodule}``` fences), each with the page naming it."""
  pattern = re.compile(
    r"^\s*(?:\.\. automodule::|```\{automodule\})\s+(\S+)", re.MULTILINE
  )
  found = {}
  for page in sorted((REPO / "docs").rglob("*")):
    if page.suffix not in (".rst", ".md") or "_build" in page.parts:
      continue
    for name in pattern.findall(page.read_text()):
      found.setdefault(name, []).append(page.relative_to(REPO))
  return found


def test_every_public_module_has_an_api_page():
  modules = public_modules()
  assert "metajax.learners.maml" in modules and "metajax.data" in modules
  documented = documented_modules()
  missing = sorted(set(modules) - set(documented))
  assert not missing, (
    f"modules without an API page (add an automodule directive to a page "
    f"under docs/api/): {missing}"
  )
  stale = sorted(set(documented) - set(modules))
  assert not stale, f"automodule directives of no public module: {stale}"
  twice = {name: pages for name, pages in documented.items() if len(pages) > 1}
  assert not twice, f"modules documented on more than one page: {twice}"


# ------------------------------------------------------------ docstrings


def _undocumented(module):
  """Public functions and classes defined in `module`, and their public
  methods, that have no docstring (a dataclass field holding a function,
  such as a flax module's initializer, is described by its class)."""
  out = []
  for name, obj in vars(module).items():
    if name.startswith("_") or not (
      inspect.isfunction(obj) or inspect.isclass(obj)
    ):
      continue
    if obj.__module__ != module.__name__:
      continue  # imported, documented where it is defined
    if not inspect.getdoc(obj):
      out.append(f"{module.__name__}.{name}")
    if inspect.isclass(obj):
      fields = (
        {f.name for f in dataclasses.fields(obj)}
        if dataclasses.is_dataclass(obj)
        else set()
      )
      out += [
        f"{module.__name__}.{name}.{attr}"
        for attr, value in vars(obj).items()
        if not attr.startswith("_")
        and attr not in fields
        and inspect.isfunction(value)
        and not inspect.getdoc(value)
      ]
  return out


def test_every_public_function_and_class_has_a_docstring():
  missing = [
    name
    for module in public_modules()
    for name in _undocumented(importlib.import_module(module))
  ]
  assert not missing, f"public names without a docstring: {missing}"
