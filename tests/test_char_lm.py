"""The character language model (jaxdl.models): stepping, rebuilding it from a run's settings;
experiments/char_lm.py: training, resuming, and its use subcommand (writing, filling a blank), a real run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from experiment_scripts import load_experiment
from tiers import unit_tier

from jaxdl.data.text import Vocabulary, lm_windows
from jaxdl.core import abstract_init, initial_state
from jaxdl.models import char_language_model, from_settings

char_lm = load_experiment("char_lm")

VOCABULARY = Vocabulary(["<pad>", "<unk>", *"\nabcdeor t."])
SETTINGS = {"embed": 8, "hidden": 16, "cell": "lstm", "layers": 2, "dropout": 0.2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny model trained by main() on a repeated sentence (then resumed for one more epoch)."""
    folder = tmp_path_factory.mktemp("tiny_lm")
    text = folder / "to_be.txt"
    text.write_text("to be or not to be. " * 300)
    out = folder / "run"
    flags = ["--text", str(text), "--out", str(out), "--hidden", "32", "--embed", "16", "--window", "32",
             "--batch-size", "16", "--lr", "1e-2", "--warmup", "0", "--end-sample", "40", "--no-progress"]
    char_lm.main([*flags, "--epochs", "3"])
    metrics = char_lm.main([*flags, "--epochs", "4", "--resume"])
    return out, flags, metrics


# ----------------------------------------------------------------------------- model
def test_model_maps_ids_to_next_character_logits_at_every_step():
    model = char_language_model(11, embed=8, hidden=16, cell="gru", layers=2)
    shape, params = abstract_init(model, (-1, 7))
    assert shape == (-1, 7, 11)
    assert set(params) == {"embedding", "rnn", "output"}
    assert jax.eval_shape(model.apply, params, jnp.ones((3, 7), jnp.int32)).shape == (3, 7, 11)
    with pytest.raises(ValueError, match="cell must be one of"):
        char_language_model(11, cell="transformer")


@pytest.mark.parametrize("cell, layers", unit_tier({"lstm-2": ("lstm", 2), "gru-1": ("gru", 1), "simple-2": ("simple", 2)},
                                                   keep="gru-1", unpack=True))
@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_the_streaming_model_reading_one_character_at_a_time_gives_the_full_sequence_logits(cell, layers):
    settings = {"embed": 8, "hidden": 16, "cell": cell, "layers": layers, "dropout": 0.5}
    model, stream = char_language_model(11, **settings), char_language_model(11, stream=True, **settings)
    _, params = model.init(jax.random.key(1), (-1, 9))
    assert jax.tree.structure(stream.init(jax.random.key(1), (3, 1))[1]) == jax.tree.structure(params)
    ids = jax.random.randint(jax.random.key(2), (3, 9), 0, 11)
    full = jax.jit(model.apply)(params, ids)
    step_through = jax.jit(lambda params, ids: jax.lax.scan(
        lambda state, column: stream.apply(params, column[:, None], state=state)[::-1],
        initial_state(stream, (3, 1)), ids.T)[1])
    stepped = step_through(params, ids)[:, :, 0]  # (T, N, 1, V) -> (T, N, V)
    np.testing.assert_allclose(stepped.swapaxes(0, 1), full, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(full[:, 1:] - full[:, :1]).max()) > 1e-3  # the state matters: steps differ


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_from_settings_rebuilds_the_language_model_of_a_runs_settings():
    run_settings = {**SETTINGS, "window": 32, "lr": 0.01, "text": "to_be.txt", "vocab_size": 99}  # flags of all kinds
    model, stream = from_settings(char_language_model, run_settings, 11), from_settings(
        char_language_model, run_settings, 11, stream=True)
    _, params = model.init(jax.random.key(0), (-1, 5))
    _, expected = char_language_model(11, **SETTINGS).init(jax.random.key(0), (-1, 5))
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, expected)
    assert not model.stateful and stream.stateful
    gru = from_settings(char_language_model, {**run_settings, "cell": "gru"}, 11)
    assert jax.tree.map(jnp.shape, gru.init(jax.random.key(0), (-1, 5))[1]) != jax.tree.map(jnp.shape, params)


# ------------------------------------------------------------------- the script
@pytest.mark.slow
def test_use_ranks_the_fills_of_a_blank_and_continues_a_prompt(tiny_run, capsys):
    out, _, metrics = tiny_run
    assert metrics["val_loss"] < 0.5  # the sentence repeats: the model has learned it
    capsys.readouterr()
    ranked, written = char_lm.main(["use", "to be or not to __. to be", "not to", "--out", str(out), "--length", "30",
                                    "--temperature", "0"])
    assert ranked[0][0] == "be"
    assert sorted(word for word, _ in ranked) == ["be", "not", "or", "to"]  # words.json: the text's words
    assert written.startswith(" be. to be") and len(written) == 30  # the most likely characters
    printed = capsys.readouterr().out
    assert "1  be" in printed and "not to" + written in printed
    [ranked] = char_lm.main(["use", "__ be or not", "--candidates", "be,to,or", "--out", str(out)])
    assert ranked[0][0] == "to" and len(ranked) == 3
    hot = ["--out", str(out), "--length", "200", "--temperature", "5"]  # flat distributions: the seed shows
    sampled = char_lm.main(["use", "to", "to", *hot, "--seed", "1"])
    assert sampled[0] == sampled[1] != char_lm.main(["use", "to", *hot, "--seed", "2"])[0]


@pytest.mark.slow
def test_resumed_run_continues_to_the_later_epochs(tiny_run):
    out, _, metrics = tiny_run
    assert metrics["epochs"] == 4
    training_chars = 6000 - 6000 // 20  # the last 5% of --text validates
    assert metrics["steps"] == 4 * (len(lm_windows(np.zeros(training_chars, np.int32), 32)["x"]) // 16)
    assert json.loads((out / "metrics.json").read_text())["steps"] == metrics["steps"]


@pytest.mark.slow
def test_a_new_run_refuses_to_overwrite_an_old_one(tiny_run, capsys):
    _, flags, _ = tiny_run
    with pytest.raises(SystemExit):
        char_lm.main([*flags, "--epochs", "1"])
    assert "add --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_characters_in_a_prompt_or_a_candidate_end_with_one_error_line(tiny_run):
    out, _, _ = tiny_run
    for texts, said in [(["ROMEO:"], "error: the prompt 'ROMEO:' holds tokens the vocabulary does not: ':', 'E', 'M', 'O', 'R'"),
                        (["to __", "--candidates", "be,die"],
                         "error: the candidate 'die' holds tokens the vocabulary does not: 'd', 'i'")]:
        with pytest.raises(SystemExit) as exit_info:
            char_lm.main(["use", *texts, "--out", str(out)])
        assert str(exit_info.value.code).startswith(said) and "\n" not in str(exit_info.value.code)


@pytest.mark.parametrize("texts, message", [(["ROMEO:"], "error: no trained run in "),
                                            (["To be, or not to __"], "error: no trained run in "),
                                            ([" "], "error: no text to use the run on")])
def test_use_without_a_trained_run_or_a_text_ends_with_one_error_line(texts, message, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["use", *texts, "--out", str(tmp_path)])
    assert str(exit_info.value.code).startswith(message) and "\n" not in str(exit_info.value.code)


@pytest.mark.parametrize("arguments, message", [
    (["__ or __"], 'a sentence to fill holds exactly one blank "__"'),
    (["to be", "--candidates", "be,die"], "--candidates names the words for a blank"),
    (["to __", "--candidates", " , "], "--candidates names the words for a blank"),
    (["ROMEO:", "--temperature", "-1"], "--temperature must be a finite number >= 0"),
    (["ROMEO:", "--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["ROMEO:", "--length", "-3"], "argument --length: expected an integer >= 0"),
    ([], "the following arguments are required: TEXT"),
])
def test_use_usage_errors(arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["use", *arguments, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [(["--dropout", "1"], "argument --dropout: expected a probability of dropping"),
                                            (["--sample", "3"], "unrecognized arguments: --sample 3")])
def test_training_usage_errors(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main([*flags, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_text_too_short_to_validate_ends_with_one_error_line(tmp_path):
    (tmp_path / "short.txt").write_text("to be or not to be")
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["--text", str(tmp_path / "short.txt"), "--out", str(tmp_path / "run"), "--devices", "1"])
    assert str(exit_info.value.code).startswith("error: the text file ") and "too few" in str(exit_info.value.code)


# ------------------------------------------------------------------------ a real run
def test_quick_run_on_tiny_shakespeare_then_use(tmp_path, tiny_shakespeare_data_dir, capsys):
    out = tmp_path / "run"
    metrics = char_lm.main(["--devices", "1", "--data-dir", str(tiny_shakespeare_data_dir), "--out", str(out), "--train-chars", "40000",
                            "--window", "32", "--batch-size", "32", "--hidden", "32", "--embed", "16", "--epochs", "1",
                            "--lr", "1e-2", "--no-progress"])
    assert metrics["val_loss"] < 3.6  # a uniform guess over 65 characters is ln 65 = 4.17 nats
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("val_loss", "train_time_s", "compile_time_s", "peak_rss_mb"):
        assert isinstance(on_disk[key], float), key
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert 40 < len(Vocabulary.load(out / "vocabulary.json")) <= 67  # <= 65 characters, <pad> and <unk>
    printed = capsys.readouterr().out
    assert "a sample (temperature 0.8):\nROMEO:" in printed  # after training, from the default prompt
    sample, fills = char_lm.main(["use", "ROMEO:", "To be, or not to __", "--out", str(out), "--length", "50"])
    assert len(sample) == 50
    assert 100 < len(fills) <= 1500  # the most frequent words of the (cut) training text
    printed = capsys.readouterr().out
    assert "ROMEO:" + sample in printed
    assert f"the 10 most likely of {len(fills)} candidates" in printed
