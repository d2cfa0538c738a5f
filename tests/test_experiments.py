"""The lecture's first section as experiment scripts: perceptron.py and xor.py."""

import ast
import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxdl import experiment
from jaxdl.checkpoint import latest_checkpoint, load_checkpoint
from jaxdl.lecture import INPUTS, TABLES
from experiment_scripts import EXPERIMENTS, load_experiment

perceptron = load_experiment("perceptron")
xor = load_experiment("xor")


# ----------------------------------------------------------------------- perceptron
@pytest.mark.slow  # a script run
def test_perceptron_learns_the_lecture_table_but_not_xor(tmp_path, capsys):
    metrics = perceptron.main(["--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert metrics["lecture"]["accuracy"] == 1.0
    assert metrics["lecture"]["first_epoch_without_mistake"] is not None
    assert metrics["xor"]["accuracy"] <= 0.75
    assert metrics["xor"]["first_epoch_without_mistake"] is None
    # No threshold unit separates XOR: the best on a grid of weights gets 3 of 4 rows.
    assert metrics["xor"]["best_line_accuracy"] == 0.75
    assert metrics["lecture"]["best_line_accuracy"] == 1.0
    # The tables show inputs, outputs and targets, and the learned weights and threshold.
    assert "x1  x2  output  target" in printed
    w1, w2 = metrics["lecture"]["weights"]
    assert f"w1 = {w1:+.3f}, w2 = {w2:+.3f}, threshold = {metrics['lecture']['threshold']:+.3f}" in printed
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert {"train_time_s", "compile_time_s", "peak_rss_mb"} <= on_disk.keys()
    assert (tmp_path / "lecture_decision.png").stat().st_size > 0


@pytest.mark.slow  # a script run
def test_perceptron_learned_unit_really_computes_the_table(tmp_path):
    metrics = perceptron.main(["--out", str(tmp_path), "--seed", "5"])
    w = np.array(metrics["lecture"]["weights"])
    outputs = (INPUTS @ w > metrics["lecture"]["threshold"]).astype(np.float32)
    np.testing.assert_array_equal(outputs, TABLES["lecture"])


@pytest.mark.slow  # script runs
def test_perceptron_resume_continues_to_the_same_weights(tmp_path):
    straight = perceptron.main(["--out", str(tmp_path / "a"), "--epochs", "12"])
    perceptron.main(["--out", str(tmp_path / "b"), "--epochs", "3"])
    resumed = perceptron.main(["--out", str(tmp_path / "b"), "--epochs", "12", "--resume"])
    for table in ("lecture", "xor"):
        assert resumed[table]["weights"] == straight[table]["weights"]
        assert resumed[table]["mistakes_per_epoch"] == straight[table]["mistakes_per_epoch"]


# ------------------------------------------------------------------------------ xor
@pytest.mark.slow
def test_xor_converges_and_writes_its_outputs(tmp_path, capsys):
    metrics = xor.main(["--out", str(tmp_path), "--study-seeds", "4"])
    printed = capsys.readouterr().out
    assert metrics["accuracy"] == 1.0
    assert metrics["loss"] < 0.01
    assert metrics["chain_rule_max_abs_diff"] < 1e-6
    assert "by hand" in printed and "jax.grad" in printed
    assert set(metrics["convergence"]) == {"2", "3", "4"}
    assert all(0 <= v["converged"] <= 4 and v["seeds"] == 4 for v in metrics["convergence"].values())
    assert metrics["convergence"]["4"]["converged"] >= 3
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("accuracy", "loss", "train_time_s", "compile_time_s", "peak_rss_mb"):
        assert isinstance(on_disk[key], float), key
    for plot in ("loss.png", "decision_surface.png", "convergence.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG"), plot


@pytest.mark.slow  # a script run
def test_xor_gets_stuck_with_too_small_a_learning_rate(tmp_path):
    """The convergence criterion is real: 200 epochs at lr 0.1 do not solve XOR."""
    metrics = xor.main(["--out", str(tmp_path), "--epochs", "200", "--lr", "0.1", "--study-seeds", "0"])
    assert metrics["loss"] > 0.5
    assert "convergence" not in metrics


def _run_xor(out, *extra):
    command = [sys.executable, str(EXPERIMENTS / "xor.py"), "--out", str(out), "--study-seeds", "0", "--epochs", "3000"]
    return subprocess.Popen([*command, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _final_params(out):
    return load_checkpoint(latest_checkpoint(out / "checkpoints")).state["params"]


@pytest.mark.slow
def test_xor_killed_and_resumed_ends_with_the_same_parameters(tmp_path):
    straight = _run_xor(tmp_path / "straight")
    killed = _run_xor(tmp_path / "killed")
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while latest_checkpoint(checkpoints) is None and time.monotonic() < deadline and killed.poll() is None:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    interrupted_at = load_checkpoint(latest_checkpoint(checkpoints)).state["step"]
    assert 0 < interrupted_at < 3000

    resumed = _run_xor(tmp_path / "killed", "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    assert straight.wait() == 0, straight.stderr.read()
    a, b = _final_params(tmp_path / "straight"), _final_params(tmp_path / "killed")
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    history = load_checkpoint(latest_checkpoint(checkpoints)).meta["history"]
    assert [r["epoch"] for r in history] == list(range(1, 3001))


@pytest.mark.slow  # script runs
def test_resume_with_other_settings_or_a_corrupt_checkpoint_ends_with_one_error_line(tmp_path, capsys):
    flags = ["--out", str(tmp_path), "--study-seeds", "0", "--epochs", "30"]
    xor.main(flags)
    for changed, said in ((["--lr", "0.5"], "lr: 2.0 -> 0.5"), (["--hidden", "5"], "hidden: 3 -> 5")):
        with pytest.raises(SystemExit) as ended:  # compared before the checkpoint's arrays (shapes) are loaded
            xor.main([*flags, "--epochs", "40", "--resume", *changed])
        assert str(ended.value.code).startswith("error: cannot resume from ") and said in str(ended.value.code)
    latest = latest_checkpoint(tmp_path / "checkpoints")
    latest.write_bytes(latest.read_bytes()[:-7] + b"garbage")
    with pytest.raises(SystemExit) as ended:
        xor.main([*flags, "--epochs", "40", "--resume"])
    assert str(ended.value.code).startswith(f"error: {latest} is corrupt or truncated")


# --------------------------------------------------------------------- flags
@pytest.mark.parametrize(
    "script, flags, message",
    [
        (xor, ["--epochs", "0"], "--epochs: expected a positive integer, got '0'"),
        (xor, ["--lr", "-1"], "--lr: expected a positive finite number, got '-1'"),
        (xor, ["--lr", "nan"], "--lr: expected a positive finite number, got 'nan'"),
        (xor, ["--batch-size", "8"], "--batch-size must be at most 4"),
        (xor, ["--momentum", "1.5"], "--momentum must be in [0, 1)"),
        (xor, ["--seed", "-3"], "--seed: expected an integer >= 0"),
        (perceptron, ["--epochs", "many"], "--epochs: expected a positive integer, got 'many'"),
    ],
)
def test_invalid_flags_are_rejected_with_a_clear_message(script, flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main([*flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("script", [xor, perceptron])
def test_a_new_run_refuses_to_overwrite_an_old_one(script, tmp_path, capsys):
    script.main(["--out", str(tmp_path), "--epochs", "3", *(["--study-seeds", "0"] if script is xor else [])])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        script.main(["--out", str(tmp_path), "--epochs", "3"])
    assert "add --resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("script", ["perceptron.py", "xor.py", "char_lm.py"])
def test_help_documents_the_shared_flags(script):
    text = subprocess.run(
        [sys.executable, str(EXPERIMENTS / script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--seed", "--epochs", "--lr", "--out", "--resume"):
        assert flag in text
    assert "(default: 0)" in text  # --seed's default is shown ...
    assert "default: None" not in text  # ... but not None: --progress's help says what it means
    if script == "xor.py":
        assert "--batch-size" in text and "--hidden" in text


# ------------------------------------------------------------------- shared helpers
@pytest.mark.parametrize("text", ["16,8", "0,8", "8,8", "a", "8,", ""])
def test_increasing_ints_refuses_what_is_not_an_increasing_list(text):
    with pytest.raises(Exception, match="expected increasing positive integers separated by commas"):
        experiment.increasing_ints(text)


def test_increasing_ints_and_probability_accept_good_values():
    assert experiment.increasing_ints("8,16,48") == (8, 16, 48)
    assert experiment.probability("0") == 0.0 and experiment.probability("0.5") == 0.5
    with pytest.raises(Exception, match=r"a probability of dropping, in \[0, 1\), got '1.0'"):
        experiment.probability("1.0")


def test_history_table_shows_the_metrics_asked_for_and_a_dash_for_missing_ones():
    history = [{"epoch": 1, "train_loss": 0.5, "val_f1": 0.8125, "elapsed_s": 3.0},
               {"epoch": 2, "train_loss": 0.25, "elapsed_s": 6.0}]  # interrupted before its f1
    lines = experiment.history_table(history, "dev", metrics=("f1",)).splitlines()
    assert lines[0].split() == ["epoch", "train", "loss", "dev", "f1", "elapsed", "s"]
    assert lines[2].split() == ["1", "0.5000", "81.25%", "3.0"]
    assert lines[3].split() == ["2", "0.2500", "-", "6.0"]


def test_member_settings_are_the_runs_identity_without_the_ensembles_size_and_with_the_seed(tmp_path):
    parser = experiment.experiment_parser("test", out=str(tmp_path), epochs=3, lr=0.1, ensemble=True)
    args = parser.parse_args(["--ensemble", "3"])
    settings = experiment.member_settings(args, 7)
    assert settings == {"seed": 7, "lr": 0.1}  # not where its files are, how it reports or how far it trains


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.py")), ids=lambda path: path.stem)
def test_script_reads_top_to_bottom(path):
    """An experiment script holds its settings (``parser``, and ``use_parser`` for its use mode)
    and its ``main`` (with ``use``): the reusable pieces live in jaxdl, where other files import them."""
    tree = ast.parse(path.read_text())
    functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    assert functions <= {"main", "use"}, f"{path.name} defines {sorted(functions - {'main', 'use'})}: move them to jaxdl"
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                if isinstance(target, ast.Name)}
    assert "parser" in assigned, f"{path.name} has no module-level parser (its settings)"
