"""Sphinx configuration: MyST markdown pages + an API reference generated from every subpackage's ``__all__``.

  sphinx-build -W -b html docs docs/_build/html      # warnings are errors (.ci/run builds it so)

The API pages (``docs/api/``) are written by ``api_pages.write`` each build, one page per subpackage listing each
of its modules, so a new module or name needs no edit here.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))

import api_pages  # noqa: E402  (docs/api_pages.py)

import jaxsvd  # noqa: E402

project = "jaxsvd"
author = "the jaxsvd authors"
copyright = "2026, the jaxsvd authors"  # noqa: A001
release = jaxsvd.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures show the names; the Args sections say the types
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
html_theme = "alabaster"
html_static_path = []
suppress_warnings = ["myst.xref_missing"]  # links into the repository outside docs/ are written as code, not links

api_pages.write(os.path.join(os.path.dirname(os.path.abspath(__file__)), "api"))


def setup(app):
  """Docstrings are plain text with math (|s|, a*b): module docstrings render verbatim (their tables are
  monospace), function and class docstrings after napoleon with RST's markup characters escaped."""
  app.connect("autodoc-process-docstring", api_pages.render_docstring, priority=600)  # after napoleon (500)
