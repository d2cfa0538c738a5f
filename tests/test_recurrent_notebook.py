"""Notebook 03 in full mode computes what docs/results.md reports for sentiment.py and char_lm.py:
its settings (the constants of its first code cell) are those scripts' defaults."""

import inspect
import json

import pytest
from experiment_scripts import ROOT, load_experiment

from jaxdl.models import char_language_model, rnn_classifier

NOTEBOOK = ROOT / "docs" / "notebooks" / "03_recurrent_networks.ipynb"


def notebook_settings(quick: bool, monkeypatch) -> dict:
    """The names the notebook's first code cell defines, in full or quick mode."""
    if quick:
        monkeypatch.setenv("JAXDL_QUICK", "1")
    else:
        monkeypatch.delenv("JAXDL_QUICK", raising=False)
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace = {}
    exec("".join(next(cell for cell in cells if cell["cell_type"] == "code")["source"]), namespace)
    return namespace


def model_flags(build, parser) -> set[str]:
    """The flags of ``parser`` that ``jaxdl.models.from_settings`` passes to ``build``."""
    keyword_only = {name for name, p in inspect.signature(build).parameters.items() if p.kind is p.KEYWORD_ONLY}
    return keyword_only & set(vars(parser.parse_args([])))


@pytest.fixture(scope="module")
def scripts():
    return load_experiment("sentiment"), load_experiment("char_lm")


def test_full_mode_settings_are_the_scripts_defaults(scripts, monkeypatch):
    sentiment, char_lm = scripts
    nb = notebook_settings(False, monkeypatch)
    assert not nb["QUICK"]
    for name, (script, flag) in {
        "SEED": (sentiment, "seed"), "DEVICES": (sentiment, "devices"), "DTYPE": (sentiment, "dtype"),
        "SST_TRAIN_EXAMPLES": (sentiment, "train_examples"), "SST_EPOCHS": (sentiment, "epochs"),
        "SST_BATCH_SIZE": (sentiment, "batch_size"), "SST_LR": (sentiment, "lr"),
        "SST_WEIGHT_DECAY": (sentiment, "weight_decay"), "SST_MIN_COUNT": (sentiment, "min_count"),
        "SST_BUCKETS": (sentiment, "buckets"),
        "LM_TRAIN_CHARS": (char_lm, "train_chars"), "LM_EPOCHS": (char_lm, "epochs"),
        "LM_BATCH_SIZE": (char_lm, "batch_size"), "LM_LR": (char_lm, "lr"), "LM_WARMUP": (char_lm, "warmup"),
        "LM_CLIP": (char_lm, "clip"), "LM_WINDOW": (char_lm, "window"), "LM_SAMPLE": (char_lm, "end_sample"),
        "LM_FILL_WORDS": (char_lm, "fill_words"),
    }.items():
        assert nb[name] == script.parser.get_default(flag), f"notebook 03's {name} is not {script.__name__}'s --{flag}"
    assert nb["SEED"] == char_lm.parser.get_default("seed") and nb["DTYPE"] == char_lm.parser.get_default("dtype")
    assert nb["LM_PROMPT"] == char_lm.END_PROMPT
    assert nb["LM_TEMPERATURE"] == char_lm.use_parser.get_default("temperature")
    for model, build, script in (("SST_MODEL", rnn_classifier, sentiment), ("LM_MODEL", char_language_model, char_lm)):
        assert set(nb[model]) == model_flags(build, script.parser)  # the arguments the script builds its model with
        assert nb[model] == {flag: script.parser.get_default(flag) for flag in nb[model]}, model


def test_quick_mode_is_small(monkeypatch):
    nb = notebook_settings(True, monkeypatch)
    assert nb["QUICK"] and nb["DEVICES"] == 1
    assert (nb["SST_TRAIN_EXAMPLES"], nb["LM_TRAIN_CHARS"], nb["SST_EPOCHS"], nb["LM_EPOCHS"]) == (400, 20_000, 2, 2)
    assert nb["SST_MODEL"]["hidden"] == nb["LM_MODEL"]["hidden"] == 32
