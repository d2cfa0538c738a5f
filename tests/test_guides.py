"""The user guides hold: every ```python block of README.md, docs/concepts.md and docs/extending.md
runs (the blocks of a guide in order, in one namespace, as a reader would run them), the experiment
script extending.md writes trains and resumes, and docs/flags.md's tables name exactly the
flags, and the defaults, of the experiment scripts' parsers."""

import argparse
import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from experiment_scripts import EXPERIMENTS, ROOT, load_experiment

DOCS = ROOT / "docs"
SCRIPTS = sorted(path.stem for path in EXPERIMENTS.glob("*.py"))


def python_blocks(guide: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", guide.read_text(), re.S | re.M)


def run_guide(guide: Path) -> tuple[dict, str]:
    """Run the guide's python blocks in order in one namespace; return it and what they printed."""
    namespace: dict = {"__name__": "guide"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for i, block in enumerate(python_blocks(guide), start=1):
            exec(compile(block, f"{guide} (python block {i})", "exec"), namespace)
    return namespace, printed.getvalue()


# -------------------------------------------------------------------------------- README.md
@pytest.mark.slow  # 2000 steps
def test_readme_example_trains_xor():
    namespace, printed = run_guide(ROOT / "README.md")
    assert "total params: 13" in printed
    result, model, xor = namespace["result"], namespace["model"], namespace["xor"]
    assert result.history[-1]["train_accuracy"] == 1.0
    logits = model.apply(result.state.params, xor["x"])[:, 0]
    np.testing.assert_array_equal(np.asarray(logits > 0), xor["y"] == 1)


# ------------------------------------------------------------------------------ concepts.md
@pytest.mark.slow  # the guide trains its networks
def test_concepts_guide_runs_and_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *args, **kwargs: str(tmp_path))  # the guide's run folder
    namespace, printed = run_guide(DOCS / "concepts.md")
    for shown in (  # what the guide shows as printed
        "total params: 50,618 (197.7 KiB)",
        "layer 'serial/conv' (Conv): expected a 4-D input (N, H, W, C), got shape (-1, 28, 28)",
        "layer 'serial/dense1' (Dense): expected input of shape (..., 2), got (4, 3)",
        "layer 'serial/dropout' (Dropout): train=True needs a random key",
        "{'batchnorm': {'mean': (16,), 'var': (16,)}}",
        "layer 'bn_net' (serial): keeps state (bn_net/batchnorm): call apply(params, x, state=state)",
        "('lengths', 'step_mask')",
        "layer 'serial' (serial): got context 'lenghts', which none of its layers reads",
        "['step_000000012.ckpt', 'step_000000024.ckpt']",
    ):
        assert shown in printed
    history = namespace["result"].history
    assert len(history) == 10 and history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert namespace["saved"].path.name == "step_000000024.ckpt"
    assert [r["train_loss"] for r in namespace["resumed"].history] == [
        r["train_loss"] for r in namespace["straight"].history]


# ----------------------------------------------------------------------------- extending.md
@pytest.fixture(scope="module")
def extending():
    return run_guide(DOCS / "extending.md")


@pytest.mark.slow  # the guide trains its networks
def test_extending_guide_runs_its_layers_model_and_loss(extending):
    namespace, printed = extending
    for shown in (  # what the guide shows as printed
        "total params: 4,419 (17.3 KiB)",
        "layer 'serial/highway' (Highway): needs inputs (N, ..., D) with a known D, got shape (-1, 5, -1)",
        "layer 'highway' (Highway): expected input of shape (..., 32), got (4, 8)",
        "layer 'residual' (Residual): x + f(x) needs f to keep the shape; dense maps (-1, 32) to (-1, 8)",
        "{'center': {'mean': Array([0.2, 0.4], dtype=float32)}}",
    ):
        assert shown in printed
    assert namespace["shape"] == (-1, 32)  # Residual keeps the shape
    history = namespace["result"].history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.9 and {"train_top2", "val_top2"} <= set(history[-1])


@pytest.mark.slow
def test_extending_guides_experiment_script_trains_and_resumes(extending, tmp_path, capsys):
    main, out = extending[0]["main"], tmp_path / "rings"
    flags = ["--epochs", "3", "--lr", "0.03", "--examples", "768", "--out", str(out), "--devices", "1"]
    metrics = main(flags)
    assert metrics["test_accuracy"] > 0.6 and metrics["epochs"] == 3  # chance is 1/3
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] and "peak_rss_mb" in saved
    checkpoints = sorted(path.name for path in (out / "checkpoints").iterdir())
    assert checkpoints == ["step_000000012.ckpt", "step_000000024.ckpt", "step_000000036.ckpt"]  # 768 / 64 per epoch

    with pytest.raises(SystemExit) as refused:  # a new run over the old one is a usage error
        main(flags)
    assert refused.value.code == 2 and "add --resume" in capsys.readouterr().err

    again = main([*flags, "--resume"])  # a finished run: loads its checkpoint, trains no further
    assert again["test_accuracy"] == metrics["test_accuracy"]
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == checkpoints

    with pytest.raises(SystemExit) as helped:
        main(["--help"])
    assert helped.value.code == 0
    assert {"--hidden", "--examples", "--ensemble", "--dtype", "--resume"} <= set(
        re.findall(r"--[\w-]+", capsys.readouterr().out))


# -------------------------------------------------------------------------------- flags.md
@pytest.fixture(scope="module")
def parsers() -> dict[str, dict[str, argparse.Action]]:
    """Each script's options (``--flag`` -> its argparse action), and its use mode's (``"NAME use"``)."""
    found = {}
    for name in SCRIPTS:
        module = load_experiment(name)
        found[name] = module.parser
        if hasattr(module, "use_parser"):
            found[f"{name} use"] = module.use_parser
    return {
        name: {flag: action for action in parser._actions for flag in action.option_strings
               if flag.startswith("--") and flag != "--help"}
        for name, parser in found.items()
    }


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in ``text``, as lists of cells."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
    return [row for row in rows if row[0] != "flag" and not set(row[0]) <= set("-: ")]


def sections(text: str) -> dict[str, str]:
    """The text under each '### `NAME.py`' or '#### `NAME.py use`' heading, keyed 'NAME' or 'NAME use'."""
    parts = re.split(r"^#{3,4} `(\w+)\.py( use)?`\n", text, flags=re.M)
    return {name + (use or ""): body for name, use, body in zip(parts[1::3], parts[2::3], parts[3::3])}


def flags_in(cell: str) -> list[str]:
    return re.findall(r"(--[\w-]+)", cell)


def check_default(script: str, flag: str, action: argparse.Action, documented: str) -> None:
    """A default written as one `literal` must be what the parser's own type makes of it;
    "off" and "on" are a switch's False and True; other words (decided at run time: all,
    none, ...) are None."""
    literal = re.fullmatch(r"`([^`]+)`", documented)
    if literal is None:
        expected = {"off": False, "on": True}.get(documented)
        assert action.default is expected, (
            f"flags.md: {script} {flag} documents its default as {documented!r}, but the parser's is "
            f"{action.default!r}; write it as " + ({False: "off", True: "on"}.get(action.default)
                                                   or f"`{action.default}`"))
        return
    text = literal.group(1).replace("NAME", script)
    convert = action.type or (lambda text: text)
    default = convert(action.default) if isinstance(action.default, str) else action.default  # as argparse reads it
    assert convert(text) == default, f"flags.md: {script} {flag} default {text!r}, the parser's is {action.default!r}"


@pytest.fixture(scope="module")
def flags_doc() -> str:
    return (DOCS / "flags.md").read_text()


def shared_table(flags_doc: str) -> dict[str, tuple[str, set[str]]]:
    """flag -> (documented default, the scripts the shared table names for it)."""
    shared = flags_doc.split("## Shared flags", 1)[1].split("\n## ", 1)[0]
    dataset_scripts = set(re.findall(r"`(\w+)`", re.search(r"\*dataset scripts\* means (.*?)\.\n", shared, re.S)[1]))
    table = {}
    for flag_cell, default, _, scripts in table_rows(shared):
        named = set(re.findall(r"`(\w+)`", scripts))
        if scripts == "all":
            chosen = set(SCRIPTS)
        elif scripts.startswith("all but"):
            chosen = set(SCRIPTS) - named
        else:
            chosen = named | (dataset_scripts if "dataset scripts" in scripts else set())
        assert chosen <= set(SCRIPTS), f"flags.md names scripts that do not exist: {chosen - set(SCRIPTS)}"
        for flag in flags_in(flag_cell):
            table[flag] = (default, chosen)
    return table


def test_flags_guide_documents_every_script(flags_doc, parsers):
    assert set(sections(flags_doc)) == set(parsers), "flags.md needs one section per script and per use mode"


def test_shared_flags_table_matches_the_parsers(flags_doc, parsers):
    table = shared_table(flags_doc)
    assert table, "flags.md: no shared-flags table found"
    for flag, (default, scripts) in table.items():
        having = {name for name in SCRIPTS if flag in parsers[name]}
        assert having == scripts, (
            f"flags.md says {flag} is in {sorted(scripts)}; the parsers have it in {sorted(having)}")
        if default != "per script":
            for name in scripts:
                check_default(name, flag, parsers[name][flag], default)


def test_each_scripts_section_matches_its_parser(flags_doc, parsers):
    table = shared_table(flags_doc)
    for name, body in sections(flags_doc).items():
        options = parsers[name]
        shared = {flag for flag, (_, scripts) in table.items() if name in scripts}
        line = re.search(r"^Shared flags: (.*)$", body, re.M)
        given = dict(re.findall(r"`(--[\w-]+) ([^`]+)`", line[1])) if line else {}
        per_script = {flag for flag in shared if table[flag][0] == "per script"}
        assert per_script <= set(given), f"flags.md: {name}'s 'Shared flags:' line lacks {sorted(per_script - set(given))}"
        for flag, value in given.items():
            assert flag in shared, f"flags.md: {name}'s 'Shared flags:' line names {flag}, not a shared flag of {name}"
            check_default(name, flag, options[flag], f"`{value}`")
        own = {}
        for flag_cell, default, meaning in table_rows(body):
            for flag in flags_in(flag_cell):
                assert flag in options, f"flags.md documents {flag} for {name}, whose parser has no such flag"
                own[flag] = default
                check_default(name, flag, options[flag], default)
        undocumented = set(options) - shared - set(own)
        assert not undocumented, f"flags.md: {name} has flags no table mentions: {sorted(undocumented)}"
        assert not set(own) & shared, f"flags.md: {name}'s own table repeats shared flags {sorted(set(own) & shared)}"


def test_check_default_reads_defaults_with_the_flags_own_type(parsers):
    # the checks above must be able to fail: a wrong literal, and a literal for a default of None
    with pytest.raises(AssertionError, match="default"):
        check_default("mnist_cnn", "--epochs", parsers["mnist_cnn"]["--epochs"], "`10`")
    with pytest.raises(AssertionError, match="default"):
        check_default("mnist_cnn", "--devices", parsers["mnist_cnn"]["--devices"], "`1`")
    check_default("last_names", "--buckets", parsers["last_names"]["--buckets"], "`8,16,32,48`")
