"""Build jaxdl's API reference (HTML pages generated from the docstrings) with pdoc.

    python docs/build_api.py                 # writes docs/api/index.html (not committed)
    python docs/build_api.py --out /tmp/api

Docstrings are Google style (Args:, Returns:) with Sphinx roles (:func:`fit`). pdoc's
warnings (an annotation it cannot resolve, say) are errors, so the reference stays clean.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

import jaxdl

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def _namedtuple_constructors_know_their_module():
    """pdoc resolves a NamedTuple's ``__init__`` annotations in the module of its generated
    ``__new__``, which Python names ``namedtuple_<Class>``, not the class's module; under
    ``from __future__ import annotations`` every such annotation then fails to resolve
    (mitmproxy/pdoc#765). Point each jaxdl NamedTuple's ``__new__`` at its class's module
    while pdoc runs; put it back afterwards."""
    modules = [module for name, module in sorted(sys.modules.items())
               if name == "jaxdl" or name.startswith("jaxdl.")]
    named_tuples = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
                    if cls.__module__.startswith("jaxdl") and issubclass(cls, tuple) and hasattr(cls, "_fields")}
    original = {cls: cls.__new__.__module__ for cls in named_tuples}
    try:
        for cls in named_tuples:
            cls.__new__.__module__ = cls.__module__
        yield
    finally:
        for cls, module in original.items():
            cls.__new__.__module__ = module


def build(out: Path) -> Path:
    """Write the reference of every public jaxdl module into ``out``; returns its index page.
    Where pdoc would warn (not other packages), raises the warning as an error."""
    pdoc.doc.Module.from_name.cache_clear()  # pdoc keeps modules' docs per process: read them afresh
    pdoc.render.configure(docformat="google", show_source=False, search=True,
                          footer_text=f"jaxdl {jaxdl.__version__}")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", module=r"pdoc(\.|$)")  # pdoc's own warnings only
        for name in pdoc.extract.walk_specs(["jaxdl"]):  # import every module pdoc will document
            __import__(name)
        with _namedtuple_constructors_know_their_module():
            pdoc.pdoc("jaxdl", output_directory=out)
    return out / "index.html"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "api", help="folder for the HTML pages")
    args = parser.parse_args(argv)
    print(f"wrote {build(args.out)}")


if __name__ == "__main__":
    main()
