"""The documentation site without running the notebooks: its link check, and a build with
the notebooks as committed (the build with every notebook run: tests/test_notebooks.py)."""

from pathlib import Path

import pytest
from experiment_scripts import ROOT, load_script

build_site = load_script(Path("docs/build.py"), "build_site")


def test_broken_links_names_missing_pages_and_sections(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.html").write_text('<h1 id="top">B</h1><a href="../a.html#intro">back</a>')
    (tmp_path / "a.html").write_text(
        '<section id="intro"><a href="sub/b.html">ok</a> <a href="sub/b.html#top">ok</a> <a href="#intro">ok</a>'
        ' <a href="https://example.com/x.html">web</a> <a href="mailto:x@example.com">mail</a>'
        ' <a href="sub/b.html#nowhere">no section</a> <a href="c.html">no page</a>'
        ' <img src="_images/missing.png"> <img src="data:image/png;base64,AAAA"></section>')
    assert build_site.broken_links(tmp_path) == [
        "a.html -> sub/b.html#nowhere", "a.html -> c.html", "a.html -> _images/missing.png"]


@pytest.mark.slow  # about 30 s
def test_site_builds_without_warnings_with_notebooks_as_committed(tmp_path):
    index = build_site.build(tmp_path, run=False)  # warnings and broken links raise SystemExit
    site = index.parent
    loop = (site / "api" / "loop.html").read_text(encoding="utf-8")
    assert 'id="jaxdl.loop.fit"' in loop and "Train for" in loop
    for path in sorted((ROOT / "docs" / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert (site / "notebooks" / f"{path.stem}.html").is_file()
    results = (site / "results.html").read_text(encoding="utf-8")
    assert 'id="published-figures"' in results and 'href="#published-figures"' in results
