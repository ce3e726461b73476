"""docs/reliability.md: every row of its tables names tests that exist."""

import re
import subprocess
import sys

from tests.conftest import REPO


# ------------------------------------------------------ the docs' table


def test_every_row_of_the_reliability_table_names_existing_tests():
  text = (REPO / "docs" / "reliability.md").read_text()
  rows = [line for line in text.splitlines()
          if line.startswith("| ") and not line.startswith("| ---")
          and not line.startswith(("| input tried", "| fault tried",
                                   "| property |"))]
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
      [sys.executable, "-m", "pytest", "--collect-only", "-q",
       "-p", "no:cacheprovider", "tests/"], cwd=REPO, capture_output=True,
      text=True, timeout=600).stdout.splitlines()
  for file, name, case in refs:
    prefix = f"tests/{file}::{name}"
    matching = [i for i in ids if i == prefix or i.startswith(prefix + "[")]
    assert matching, f"{prefix} is not a test"
    if case and "*" not in case and "..." not in case:
      assert f"{prefix}{case}" in ids, f"{prefix}{case} is not a test"
