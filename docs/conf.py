"""Sphinx configuration: the API reference from the docstrings, and the guides.

Build (warnings are errors):

  python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

# The repository root first, so that the metajax of this checkout is
# documented rather than another installed copy.
sys.path.insert(0, os.path.dirname(_HERE))

project = "metajax"
author = "The metajax authors"
copyright = "The metajax authors"  # pylint: disable=redefined-builtin
release = "0.1.0"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

# Google-style docstrings only.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The docstrings write code and shapes in single backticks, as in Markdown.
default_role = "literal"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# Headings become anchors, so that links like configs.md#config-fields
# resolve.
myst_heading_anchors = 3

# The guides link the repository's README as ../README.md, which works on
# GitHub; it lies outside docs/, so Sphinx cannot link it, and those links
# render as plain text here instead of warning.
nitpick_ignore_regex = [("myst", r".*/README")]

html_theme = "alabaster"


def _drop_absent_comparison(app, docname, source):
  """Drops 'comparison' from index.md's toctree while comparison.md is absent.

  docs/comparison.md is written by a script (`python -m experiments.compare`)
  and may not exist yet; the build passes either way.
  """
  del app  # unused
  if (docname == "index"
      and not os.path.exists(os.path.join(_HERE, "comparison.md"))):
    source[0] = source[0].replace("\ncomparison\n", "\n")


def _skip_described_fields(app, what, name, obj, skip, options):
  """Skips class members that the class's docstring already describes.

  A NamedTuple's fields are described in its docstring's Attributes section;
  their generated "Alias for field number N" members would describe them a
  second time. Likewise a flax module's field whose default is a function of
  another library (e.g. `bias_init = nn.initializers.zeros_init()`) is not a
  method of the class.
  """
  del app, name, options  # unused
  if what != "class" or skip:
    return None
  if (getattr(obj, "__doc__", None) or "").startswith("Alias for field"):
    return True
  module = getattr(obj, "__module__", None)
  if callable(obj) and module and not module.startswith("metajax"):
    return True
  return None


def setup(app):
  app.connect("source-read", _drop_absent_comparison)
  app.connect("autodoc-skip-member", _skip_described_fields)
