"""The README's Python examples run as written (```python blocks, in order).

Blocks fenced as ```py need files of a user's own and are not run here.
"""

import re

from tests.conftest import REPO


def test_readme_python_blocks_run(omniglot_data_dir, monkeypatch, capsys):
  monkeypatch.setenv("METAJAX_DATA_DIR", omniglot_data_dir)
  text = (REPO / "README.md").read_text(encoding="utf-8")
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert len(blocks) >= 2
  namespace = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert re.search(r"MSE \d+\.\d+ \+- \d+\.\d+", out)
  accuracy = float(re.search(r"accuracy (\d\.\d+)", out).group(1))
  assert 0.0 <= accuracy <= 1.0
  # The sinusoid example did learn: its MSE is far below the ~4.25 (E[A^2]/2) of
  # predicting zero for A sin(x + phi) with A ~ U[0.1, 5].
  assert float(re.search(r"MSE (\d+\.\d+)", out).group(1)) < 3.0
