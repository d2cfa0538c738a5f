"""The API reference: every public name has a docstring, and every public module its page
(docs/api/, built into the documentation site by autodoc: tests/test_docs_site.py)."""

import inspect
import pkgutil
import re

import jaxdl
from experiment_scripts import ROOT


def test_every_public_name_has_a_docstring():
    public = [name for name, value in vars(jaxdl).items()
              if not name.startswith("_") and not inspect.ismodule(value) and not isinstance(value, str)]
    assert len(public) > 50
    assert [name for name in public if not (getattr(jaxdl, name).__doc__ or "").strip()] == []


def test_every_public_module_has_an_api_page():
    modules = {name for _, name, _ in pkgutil.walk_packages(jaxdl.__path__, "jaxdl.")
               if not any(part.startswith("_") for part in name.split("."))}
    internal = {"jaxdl.data.batching", "jaxdl.data.text_datasets", "jaxdl.data.tfds"}  # documented through jaxdl.data
    pages = set()
    for path in sorted((ROOT / "docs" / "api").glob("*.md")):
        if path.name != "index.md":
            documented = re.findall(r"^\.\. automodule:: (\S+)$", path.read_text(), re.M)
            assert len(documented) == 1, f"{path.name} documents one module with an automodule directive"
            pages.add(documented[0])
    assert pages == modules - internal
    index = (ROOT / "docs" / "api" / "index.md").read_text()
    assert all(f"[`{module}`]" in index for module in pages), "docs/api/index.md lists every page"
