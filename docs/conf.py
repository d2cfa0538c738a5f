"""Sphinx settings of jaxdl's documentation site: the guides and results (MyST Markdown), the
lecture notebooks rendered with their outputs (MyST-NB) and the API reference (autodoc).

Build it with ``python docs/build.py`` (it runs the notebooks first; see its docstring).
"""

from __future__ import annotations

import re
from pathlib import Path

from sphinx.util import logging

import jaxdl

project = "jaxdl"
author = "the jaxdl authors"
copyright = "2026, the jaxdl authors"
release = version = jaxdl.__version__

extensions = ["myst_nb", "sphinx_design", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# MyST: $...$ math, ::: fences (sphinx-design tabs), and anchors for headings so that links such as results.md#sentiment resolve.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 4

# The notebooks are executed by build.py (quick or full mode) before Sphinx reads them.
nb_execution_mode = "off"
nb_merge_streams = True

# The API reference: Google-style docstrings (Args:, Returns:) with Sphinx roles.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_use_ivar = True

html_theme = "sphinx_book_theme"
html_title = f"jaxdl {release}"
html_theme_options = {"show_toc_level": 2}


def _executed_notebook(app, docname: str, source: list[str]) -> None:
    """Read a notebook's executed copy (in the folder ``jaxdl_executed``, set by build.py) in
    place of the committed one, which has no outputs."""
    folder = app.config.jaxdl_executed
    if folder and docname.startswith("notebooks/"):
        executed = Path(folder) / f"{docname.removeprefix('notebooks/')}.ipynb"
        if executed.is_file():
            source[0] = executed.read_text(encoding="utf-8")
        else:
            logging.getLogger(__name__).warning(f"no executed copy of {docname} in {folder}: run it first",
                                                location=docname)


_RAW_ANCHOR = re.compile(r'^<a id="([^"]+)"></a>$', re.M)


def _anchors_as_targets(app, docname: str, source: list[str]) -> None:
    """The guides mark sections with ``<a id="name"></a>`` lines, which GitHub renders as
    anchors; make each a MyST target ``(name)=``, so that links to ``#name`` resolve here too."""
    if not docname.startswith("notebooks/"):
        source[0] = _RAW_ANCHOR.sub(r"(\1)=", source[0])


def setup(app):
    app.add_config_value("jaxdl_executed", "", "env")
    app.connect("source-read", _executed_notebook)
    app.connect("source-read", _anchors_as_targets)
