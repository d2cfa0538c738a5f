"""The API reference builds from the docstrings without a warning, one page per module."""

import contextlib
import inspect
from pathlib import Path

import pytest

import jaxdl
from experiment_scripts import load_script

build_api = load_script(Path("docs/build_api.py"), "build_api")

MODULES = ["allocator", "augment", "checkpoint", "compiler", "core", "crf", "data", "data/tagging", "data/text", "data/vectors", "devices", "entities", "experiment",
           "generate", "gradients", "layers", "lecture", "loop", "losses", "metrics", "models", "precision", "recurrent",
           "runs", "tables", "timing", "train", "viz"]


def test_every_public_name_has_a_docstring():
    public = [name for name, value in vars(jaxdl).items()
              if not name.startswith("_") and not inspect.ismodule(value) and not isinstance(value, str)]
    assert len(public) > 50
    assert [name for name in public if not (getattr(jaxdl, name).__doc__ or "").strip()] == []


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_reference_builds_without_warnings(tmp_path):
    index = build_api.build(tmp_path)  # warnings are errors inside build()
    assert index.is_file()
    pages = {str(path.relative_to(tmp_path / "jaxdl").with_suffix("")) for path in (tmp_path / "jaxdl").rglob("*.html")}
    assert pages == set(MODULES)
    loop = (tmp_path / "jaxdl" / "loop.html").read_text()
    assert 'id="fit"' in loop and "Train for <code>epochs</code> epochs" in loop
    assert 'href="data/text.html#Buckets"' in loop  # a cross reference became a link


def test_pdoc_warnings_fail_the_build(tmp_path, monkeypatch):
    # Without the NamedTuple fix (pdoc#765) pdoc cannot resolve their annotations and warns.
    monkeypatch.setattr(build_api, "_namedtuple_constructors_know_their_module", contextlib.nullcontext)
    with pytest.raises(UserWarning, match="Error parsing type annotation"):
        build_api.build(tmp_path)
