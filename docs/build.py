"""Build jaxdl's documentation site: the guides, the results, the API reference and every
lecture notebook rendered with its outputs (Sphinx with MyST-NB, as JAX, Flax and Optax build theirs).

    .venv/bin/python docs/build.py --quick                        # notebooks in quick mode: a few minutes
    .venv/bin/python docs/build.py                                # notebooks in full mode: the figures of results.md
    .venv/bin/python docs/build.py --executed runs/notebooks_full # notebooks already run by docs/notebooks/run.py
    .venv/bin/python docs/build.py --no-run                       # notebooks as committed, without outputs

The site goes to OUT/html (open OUT/html/index.html; OUT is docs/_build unless --out), the
executed notebooks to OUT/notebooks. Sphinx's warnings are errors, and every link between the
pages (and to a section of one) must resolve: either fails the build with what to mend.
Notebooks that need a dataset read it as the experiments do; offline, set JAXDL_MANUAL_DIR.
"""

from __future__ import annotations

import argparse
import html.parser
import importlib.util
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sphinx.cmd.build import build_main

DOCS = Path(__file__).resolve().parent


def _notebook_runner():
    """docs/notebooks/run.py, the notebooks' runner, as a module."""
    spec = importlib.util.spec_from_file_location("notebook_runner", DOCS / "notebooks" / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def run_notebooks(folder: Path, *, quick: bool, timeout: int = 1800) -> Path:
    """Run every lecture notebook (quick or full mode) and write the executed copies to ``folder``.
    A failing notebook stops the build (SystemExit naming it); its copy keeps the outputs so far."""
    if failed := _notebook_runner().run(out=folder, quick=quick, timeout=timeout):
        raise SystemExit(f"notebooks failed: {', '.join(failed)} (the failing cells above; the executed copies in {folder})")
    return folder


def sphinx(out: Path, executed: Path | None) -> Path:
    """Build the HTML pages into ``out``, the notebooks read from ``executed`` (their executed
    copies) or, if None, as committed; warnings are errors. Returns the index page."""
    args = ["-b", "html", "-E", "-W", "--keep-going", "-q", str(DOCS), str(out)]
    if executed is not None:
        args[:0] = ["-D", f"jaxdl_executed={executed.resolve()}"]
    if build_main(args):
        raise SystemExit("the documentation has warnings (above): mend them, they are errors")
    return out / "index.html"


class _Links(html.parser.HTMLParser):
    """The ids a page defines, and the targets of its links and images."""

    def __init__(self):
        super().__init__()
        self.ids, self.links = set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            self.links.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.links.append(attrs["href"])


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def broken_links(site: Path) -> list[str]:
    """Every link of the HTML pages under ``site`` that points inside the site but to no file,
    or to no element with that id: ``"page -> target"`` for each. Web addresses are not checked."""
    pages = {page.resolve(): _parse(page) for page in site.rglob("*.html")
             if not page.relative_to(site).parts[0].startswith("_")}  # not the theme's templates
    broken = []
    for page, parsed in sorted(pages.items()):
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue  # another site (https:, mailto:, data:)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site.resolve())} -> {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site.resolve())} -> {link}")
    return broken


def build(out: Path, *, quick: bool = False, executed: Path | None = None, run: bool = True,
          timeout: int = 1800) -> Path:
    """The whole site into ``out/html``: runs the notebooks into ``out/notebooks`` unless given
    their ``executed`` copies (or ``run=False``), builds the pages, checks their links.
    Returns the index page."""
    if executed is None and run:
        executed = run_notebooks(out / "notebooks", quick=quick, timeout=timeout)
    index = sphinx(out / "html", executed)
    if broken := broken_links(out / "html"):
        raise SystemExit("links that lead nowhere:\n  " + "\n  ".join(broken))
    return index


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DOCS / "_build", help="folder for the site (html/) and the executed notebooks")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="run the notebooks in quick mode (small subsets, few steps)")
    mode.add_argument("--executed", type=Path, metavar="DIR", help="render the executed notebooks in DIR instead of running them")
    mode.add_argument("--no-run", action="store_true", help="render the notebooks as committed, without outputs")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per notebook cell")
    args = parser.parse_args(argv)
    if args.executed is not None and not args.executed.is_dir():
        parser.error(f"--executed {args.executed}: no such folder; run the notebooks with docs/notebooks/run.py --out DIR first")
    index = build(args.out, quick=args.quick, executed=args.executed, run=not args.no_run, timeout=args.timeout)
    print(f"wrote {index}")


if __name__ == "__main__":
    sys.exit(main())
