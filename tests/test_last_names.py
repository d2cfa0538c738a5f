"""Tests of experiments/last_names.py end to end: its command line, a quick real run, and its
`use` subcommand on the run it saved (its pieces are tested in test_entities.py and test_tagging.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from experiment_scripts import EXPERIMENTS, load_experiment

last_names = load_experiment("last_names")


def test_use_without_a_trained_run_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit) as stop:
        last_names.main(["use", "Mr. Doe", "--out", str(tmp_path)])
    message = str(stop.value.code)
    assert message.startswith(f"error: no trained run in {tmp_path}") and "\n" not in message


def test_use_without_any_text_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n  \n"))
    with pytest.raises(SystemExit) as stop:
        last_names.main(["use", "-", "--out", str(tmp_path)])
    assert str(stop.value.code).startswith("error: no text to use the run on")


@pytest.mark.slow
def test_help_documents_both_commands():
    train_help = subprocess.run([sys.executable, str(EXPERIMENTS / "last_names.py"), "--help"],
                                capture_output=True, text=True, check=True).stdout
    assert "--word-dropout" in train_help and "--manual-dir" in train_help
    assert 'Then "last_names.py use TEXT" marks' in " ".join(train_help.split())
    use_help = subprocess.run([sys.executable, str(EXPERIMENTS / "last_names.py"), "use", "--help"],
                              capture_output=True, text=True, check=True).stdout
    assert "usage: last_names.py use" in use_help and "a text to tag" in use_help and "--out" in use_help


@pytest.mark.parametrize("crf", ["--crf", "--no-crf"])
def test_quick_real_run_then_use(crf, tmp_path, conll2003_data_dir, capsys, monkeypatch):
    out = tmp_path / "run"
    metrics = last_names.main(["--devices", "1", "--train-examples", "2000", "--epochs", "5", "--lr", "1e-2", "--hidden", "32",
                               "--embed", "32", "--char-features", "16", "--layers", "1", "--dropout", "0.1",
                               "--buckets", "64", crf, "--out", str(out), "--data-dir", str(conll2003_data_dir)])
    printed = capsys.readouterr().out
    assert "hand-made features + logistic unit" in printed and "learned features (BiLSTM tagger)" in printed
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("test_last_name_f1", "test_per_f1", "test_f1", "dev_f1", "baseline_test_last_name_f1", "train_time_s"):
        assert key in on_disk and on_disk[key] == metrics[key], key
    assert metrics["baseline_test_last_name_f1"] > 0.5  # the hand-made features find most last names
    assert metrics["dev_f1"] > 0.3  # a small network after 5 short epochs is far from done, but learning

    results = last_names.main(["use", "Yesterday Mr. John Doe met Jane Smith in Paris.", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.startswith("network:  ") and "features: last names" in printed
    (result,) = results
    assert result["tokens"] == ["Yesterday", "Mr.", "John", "Doe", "met", "Jane", "Smith", "in", "Paris", "."]
    assert len(result["tags"]) == len(result["tokens"]) and set(result["tags"]) <= {
        "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}
    assert "Doe" in result["baseline_last_names"] and "Smith" in result["baseline_last_names"]

    monkeypatch.setattr(sys, "stdin", io.StringIO("Smith told Reuters on Monday .\n\nClinton said .\n"))
    assert [r["tokens"] for r in last_names.main(["use", "-", "--out", str(out)])] == [
        ["Smith", "told", "Reuters", "on", "Monday", "."], ["Clinton", "said", "."]]

    (out / "baseline.json").unlink()  # a run without its threshold is not whole
    with pytest.raises(SystemExit, match="error: the run in .* is not whole: no threshold in baseline.json"):
        last_names.main(["use", "Mr. Doe", "--out", str(out)])
