"""The character language model (jaxdl.models) and experiments/char_lm.py: stepping, sampling, --fill, a real run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from experiment_scripts import load_experiment
from tiers import unit_tier

from jaxdl.data.text import Vocabulary, lm_windows
from jaxdl.core import abstract_init, initial_state
from jaxdl.models import char_language_model

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
             "--batch-size", "16", "--lr", "1e-2", "--warmup", "0", "--end-sample", "0", "--no-progress"]
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


# ------------------------------------------------------------------- the script
@pytest.mark.slow
def test_fill_ranks_the_right_word_first(tiny_run, capsys):
    out, _, metrics = tiny_run
    assert metrics["val_loss"] < 0.5  # the sentence repeats: the model has learned it
    capsys.readouterr()
    ranked = char_lm.main(["--out", str(out), "--fill", "to be or not to __. to be"])["fill"]
    assert ranked[0][0] == "be"
    assert sorted(word for word, _ in ranked) == ["be", "not", "or", "to"]  # words.json: the text's words
    printed = capsys.readouterr().out
    assert "1  be" in printed
    ranked = char_lm.main(["--out", str(out), "--fill", "__ be or not", "--candidates", "be,to,or"])["fill"]
    assert ranked[0][0] == "to"


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


@pytest.mark.parametrize("sentence", ["to be or not to be", "__ or __", ""])
def test_fill_needs_exactly_one_blank(sentence, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["--out", str(tmp_path), "--fill", sentence])
    assert exit_info.value.code == 2
    assert 'exactly one blank "__"' in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_characters_in_a_prompt_or_a_candidate_end_with_a_clear_message(tiny_run):
    out, _, _ = tiny_run
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["--out", str(out), "--sample", "10", "--prompt", "ROMEO:"])
    assert "the prompt 'ROMEO:' holds tokens the vocabulary does not: ':', 'E', 'M', 'O', 'R'" in str(
        exit_info.value.code)
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["--out", str(out), "--fill", "to __", "--candidates", "be,die"])
    assert "the candidate 'die' holds tokens the vocabulary does not: 'd', 'i'" in str(exit_info.value.code)


def test_sample_without_a_trained_model_says_what_to_do(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        char_lm.main(["--out", str(tmp_path), "--sample", "100"])
    assert "Train a model first: python experiments/char_lm.py --out" in str(exit_info.value.code)


def test_other_usage_errors(tmp_path, capsys):
    for flags, message in [(["--candidates", "be,die"], "--candidates goes with --fill"),
                           (["--temperature", "-1", "--sample", "3"], "--temperature must be a finite number >= 0"),
                           (["--dropout", "1"], "--dropout is a probability")]:
        with pytest.raises(SystemExit) as exit_info:
            char_lm.main([*flags, "--out", str(tmp_path)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


# ------------------------------------------------------------------------ a real run
def test_quick_run_on_tiny_shakespeare_then_sample_and_fill(tmp_path, tiny_shakespeare_data_dir, capsys):
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
    capsys.readouterr()
    result = char_lm.main(["--out", str(out), "--sample", "50", "--prompt", "ROMEO:", "--fill", "To be, or not to __"])
    assert len(result["sample"]) == 50
    assert 100 < len(result["fill"]) <= 1500  # the most frequent words of the (cut) training text
    printed = capsys.readouterr().out
    assert "ROMEO:" + result["sample"] in printed
    assert f"the 10 most likely of {len(result['fill'])} candidates" in printed
