"""The recurrent classifier, fit/evaluate over length buckets, rebuilding it from a run's settings,
and experiments/sentiment.py (training, and its use subcommand)."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxdl as dl
from experiment_scripts import load_experiment
from jaxdl import runs
from jaxdl.data.text import Vocabulary, bucket_examples
from jaxdl.generate import classify_sentences
from jaxdl.models import from_settings, rnn_classifier

sentiment = load_experiment("sentiment")


def has_token_dataset(n: int, seed: int):
    """Sequences of 2-15 ids in [2, 20); label 1 when id 2 occurs somewhere (it needs memory)."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(3, 20, rng.integers(2, 16)).tolist() for _ in range(n)]
    labels = rng.integers(0, 2, n)
    for sequence, label in zip(sequences, labels):
        if label:
            sequence[rng.integers(len(sequence))] = 2
    return bucket_examples(sequences, (8, 16), columns={"y": labels.astype(np.int32)})


OPTIMIZER = optax.adam(1e-2)


@pytest.fixture(scope="module")
def classifier():
    """A small rnn_classifier and its untrained train state."""
    model = rnn_classifier(20, 2, embed=16, hidden=16, layers=1, dropout=0.0)
    _, params = model.init(jax.random.key(0), (-1, 16))
    return model, dl.TrainState.create(params, OPTIMIZER, jax.random.key(1))


@pytest.mark.slow  # training
def test_classifier_learns_from_length_buckets(classifier):
    model, state = classifier
    result = dl.fit(state, dl.make_train_step(model, dl.softmax_cross_entropy, OPTIMIZER),
                    has_token_dataset(1024, 0), epochs=6, batch_size=32, progress=False)
    scores = dl.evaluate(dl.make_eval_step(model, dl.softmax_cross_entropy), result.state.params,
                         has_token_dataset(300, 1), 32)
    assert scores["accuracy"] > 0.9  # chance is 0.5


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_padding_does_not_change_the_logits(classifier):
    model, state = classifier
    ids, lengths = jnp.array([[5, 2, 7, 0], [9, 4, 0, 0]]), jnp.array([3, 2])
    longer = jnp.pad(ids, ((0, 0), (0, 6)))
    logits = model.apply(state.params, ids, lengths=lengths)
    np.testing.assert_allclose(logits, model.apply(state.params, longer, lengths=lengths), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, dl.predict(model, state.params, {"x": longer, "lengths": lengths}, 4),
                               rtol=1e-5, atol=1e-6)


def test_the_classifier_refuses_padded_ids_without_their_lengths(classifier):
    model, state = classifier
    with pytest.raises(dl.LayerError, match=r"'rnn_classifier/rnn' \(BiLSTM\): reads padded sequences"):
        model.apply(state.params, jnp.array([[5, 2, 7, 0]]))


@pytest.mark.slow  # 8 simulated devices
def test_bucket_lengths_reach_the_rnn_through_fit_on_a_mesh(classifier):
    model, state = classifier
    data = has_token_dataset(256, 3)
    runs = [dl.fit(state, dl.make_train_step(model, dl.softmax_cross_entropy, OPTIMIZER), data, epochs=1,
                   batch_size=32, progress=False, verbose=False, mesh=mesh)
            for mesh in (None, dl.make_mesh(8))]
    assert runs[0].history[0]["train_loss"] == pytest.approx(runs[1].history[0]["train_loss"], rel=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_the_classifier_is_a_plain_composition_trained_on_buckets_without_wiring():
    """The lecture's sentence classifier written out: the batches' lengths reach the RNN inside serial."""
    model = dl.serial(dl.Embedding(20, 16), dl.RNN(dl.LSTMCell(16), output="last"), dl.Dense(2))
    assert model.reads == ("lengths", "step_mask")
    _, params = model.init(jax.random.key(0), (-1, 16))
    optimizer = optax.adam(1e-2)
    result = dl.fit(dl.TrainState.create(params, optimizer, jax.random.key(1)),
                    dl.make_train_step(model, dl.softmax_cross_entropy, optimizer),
                    has_token_dataset(1024, 0), epochs=6, batch_size=32, progress=False, verbose=False)
    eval_step = dl.make_eval_step(model, dl.softmax_cross_entropy)
    assert dl.evaluate(eval_step, result.state.params, has_token_dataset(300, 1), 32)["accuracy"] > 0.9
    # Without the lengths, the padding would be read as words: "last" would be a padded step.
    batch = next(has_token_dataset(64, 1).eval_batches(64))
    assert (batch["lengths"] < batch["x"].shape[1]).any()
    without = dict(batch, lengths=jnp.full_like(batch["lengths"], batch["x"].shape[1]))
    assert not np.allclose(eval_step(result.state.params, batch)["loss"], eval_step(result.state.params, without)["loss"])


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_evaluate_counts_every_bucketed_example_once(classifier):
    model, state = classifier
    eval_step = dl.make_eval_step(model, dl.softmax_cross_entropy)
    data = has_token_dataset(101, 2)  # odd sizes: the last batch of each bucket is filled up and masked
    weights = sum(float(eval_step(state.params, batch)["weight"]) for batch in data.eval_batches(32))
    assert weights == 101


def test_many_steps_per_call_needs_arrays(classifier):
    model, state = classifier
    with pytest.raises(ValueError, match="steps_per_call > 1 needs the training data as a dict of arrays"):
        dl.fit(state, dl.make_train_step(model, dl.softmax_cross_entropy, OPTIMIZER),
               has_token_dataset(64, 0), epochs=1, batch_size=32, steps_per_call=2, progress=False)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell must be one of"):
        rnn_classifier(10, 2, cell="transformer")


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_from_settings_rebuilds_the_classifier_of_a_runs_settings(classifier):
    """A run's settings hold flags of every kind; the model's keyword-only arguments are taken
    from them, the rest ignored (the vocabulary size and class count are given)."""
    model, state = classifier
    settings = {"embed": 16, "hidden": 16, "layers": 1, "dropout": 0.0, "cell": "lstm", "bidirectional": True,
                "pool": "mean", "embed_dropout": 0.0, "word_dropout": 0.0, "lr": 0.1, "seed": 3, "num_classes": 7}
    rebuilt = from_settings(rnn_classifier, settings, 20, 2)
    assert jax.tree.structure(rebuilt.init(jax.random.key(0), (-1, 16))[1]) == jax.tree.structure(state.params)
    ids, lengths = jnp.array([[5, 2, 7, 0]]), jnp.array([3])
    np.testing.assert_array_equal(rebuilt.apply(state.params, ids, lengths=lengths),
                                  model.apply(state.params, ids, lengths=lengths))
    one_way = from_settings(rnn_classifier, settings, 20, 2, bidirectional=False)  # given arguments win
    assert "backward" not in one_way.init(jax.random.key(0), (-1, 16))[1]["rnn"]["layer1"]
    assert from_settings(rnn_classifier, {**settings, "hidden": 8}, 20, 2).init(
        jax.random.key(0), (-1, 16))[1]["output"]["w"].shape == (16, 2)  # 8 per direction


@pytest.mark.parametrize("texts, message", [(["great film"], "error: no trained run in "),
                                            (["  ", ""], "error: no text to use the run on")])
def test_use_without_a_trained_run_or_a_text_ends_with_one_error_line(texts, message, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        sentiment.main(["use", *texts, "--out", str(tmp_path)])
    said = str(exit_info.value.code)
    assert said.startswith(message) and "\n" not in said


def test_use_needs_a_text(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sentiment.main(["use"])
    assert exit_info.value.code == 2
    assert "sentiment.py use: error: the following arguments are required: TEXT" in capsys.readouterr().err


def test_quick_ensemble_on_real_sst2_then_use(tmp_path, sst2_data_dir, capsys):
    out = tmp_path / "run"
    metrics = sentiment.main(["--epochs", "2", "--devices", "1", "--train-examples", "6000", "--lr", "5e-3", "--hidden", "32",
                              "--embed", "32", "--ensemble", "2", "--out", str(out),
                              "--data-dir", str(sst2_data_dir)])
    assert metrics["dev_accuracy"] > 0.6  # chance is about 0.5
    first, second = metrics["member_dev_accuracies"]
    assert first > 0.6 and second > 0.6 and first != second  # seeds 0 and 1
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("dev_accuracy", "train_time_s", "compile_time_s", "peak_rss_mb"):
        assert key in on_disk, key
    members = [out / "checkpoints" / "member1", out / "checkpoints" / "member2"]
    assert runs.saved_members(out) == members
    capsys.readouterr()
    sentences = ["a gorgeous , witty , seductive movie .", "the plot is a mess and the acting is even worse ."]
    p_positive = sentiment.main(["use", *sentences, "", "--out", str(out)])  # a blank text is skipped
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("  ", 1)[1] for line in printed] == sentences
    assert [float(line.split()[0]) for line in printed] == pytest.approx(p_positive, abs=5e-4)
    assert p_positive[0] > p_positive[1]  # the praise above the pan (a weak quick network: near 0.5 both)
    vocabulary = Vocabulary.load(out / "vocabulary.json")
    checkpoints = [dl.load_checkpoint(folder) for folder in members]
    model = from_settings(rnn_classifier, checkpoints[0].config, len(vocabulary), 2)
    each = classify_sentences(model, [c.state["params"] for c in checkpoints], vocabulary, sentences)
    assert each.shape == (2, 2, 2) and each[0, 0, 1] != each[1, 0, 1]
    np.testing.assert_allclose(p_positive, each[:, :, 1].mean(0), rtol=1e-6)  # the networks' average


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_predict_over_buckets_gives_each_example_in_input_order(classifier):
    model, state = classifier
    data = has_token_dataset(45, 5)  # two buckets, the last batch of each filled up
    outputs = dl.predict(model, state.params, data, 16)
    assert len(outputs) == 45 and all(o.shape == (2,) for o in outputs)
    rows = sorted((int(i), x[:n], n) for bucket in data.arrays for x, n, i in zip(bucket["x"], bucket["lengths"],
                                                                                   bucket["index"]))
    apply = jax.jit(model.apply)
    for (index, ids, length), got in list(zip(rows, outputs))[::6]:  # every sixth: each alone compiles anew
        alone = apply(state.params, jnp.asarray(ids[None]), lengths=jnp.array([length]))[0]
        np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_per_step_outputs_are_cut_to_each_examples_length(classifier):
    tagger = dl.serial(dl.Embedding(20, 8), dl.RNN(dl.GRUCell(8)), dl.Dense(3))
    _, params = tagger.init(jax.random.key(0), (-1, 16))
    data = has_token_dataset(20, 6)
    outputs = dl.predict(tagger, params, data, 8, per_step=True)
    lengths = {int(i): int(n) for bucket in data.arrays for n, i in zip(bucket["lengths"], bucket["index"])}
    assert [o.shape for o in outputs] == [(lengths[i], 3) for i in range(20)]


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_ensemble_predict_averages_the_members_probabilities(classifier):
    model, state = classifier
    other = model.init(jax.random.key(9), (-1, 16))[1]
    data = has_token_dataset(30, 7)
    each = [dl.predict(model, params, data, 16, transform=jax.nn.softmax) for params in (state.params, other)]
    averaged = dl.ensemble_predict(model, [state.params, other], data, 16)
    for got, a, b in zip(averaged, *each):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-6)
        assert got.sum() == pytest.approx(1.0, rel=1e-5)
    arrays = {"x": np.asarray([[3, 4, 5, 0]]), "lengths": np.array([3])}
    np.testing.assert_allclose(dl.ensemble_predict(model, [state.params, state.params], arrays, 4),
                               jax.nn.softmax(dl.predict(model, state.params, arrays, 4)), rtol=1e-6)


def test_quick_run_from_frozen_pretrained_vectors(tmp_path, sst2_data_dir, capsys):
    vectors = {"the": [0.5, -0.25, 1.0, 2.0], "movie": [1.5, 0.0, -1.0, 0.25], "Film": [3.0, 1.0, 0.0, -2.0],
               "zyzzyva": [0.0, 1.0, 2.0, 3.0]}
    path = tmp_path / "vectors.txt"
    path.write_text("".join(f"{word} {' '.join(map(str, v))}\n" for word, v in vectors.items()))
    out = tmp_path / "run"
    sentiment.main(["--epochs", "1", "--devices", "1", "--train-examples", "1000", "--hidden", "8", "--embed", "4",
                    "--embeddings", str(path), "--freeze-embeddings", "--out", str(out), "--data-dir", str(sst2_data_dir)])
    # "zyzzyva", never seen in training, joins the vocabulary; "Film" is not a word of the lower-cased text
    assert "pretrained vectors for 3 of " in capsys.readouterr().out
    vocabulary = Vocabulary.load(out / "vocabulary.json")
    assert vocabulary.tokens[-1] == "zyzzyva" and "Film" not in vocabulary
    table = dl.load_checkpoint(out / "checkpoints").state["params"]["embedding"]["table"]
    for word in ("the", "movie", "zyzzyva"):  # trained for an epoch, and still the file's vectors
        np.testing.assert_array_equal(table[vocabulary.tokens.index(word)], np.float32(vectors[word]))
    with pytest.raises(SystemExit, match="error: expected 8-dimensional vectors, .* has 4: pass the file of the "
                                         "right size or --embed 4"):
        sentiment.main(["--embed", "8", "--embeddings", str(path), "--train-examples", "100", "--out",
                        str(tmp_path / "other"), "--data-dir", str(sst2_data_dir)])
    capsys.readouterr()
    for flags, message in ((["--embeddings", str(tmp_path / "missing.txt")], "--embeddings: no file at .*missing.txt; "
                            "download GloVe from"), (["--freeze-embeddings"], "--freeze-embeddings keeps pretrained "
                                                     "vectors: give them with --embeddings PATH")):
        with pytest.raises(SystemExit) as exit_info:  # at once, before the data is read
            sentiment.main([*flags, "--out", str(tmp_path / "other2")])
        assert exit_info.value.code == 2 and re.search(message, capsys.readouterr().err)


@pytest.mark.slow  # training
def test_an_attention_pooled_classifier_learns_from_buckets_and_ignores_padding():
    model = rnn_classifier(20, 2, embed=16, hidden=16, layers=1, dropout=0.0, pool="attention")
    _, params = model.init(jax.random.key(0), (-1, 16))
    assert params["attention"]["w"].shape == (32, 16)  # both directions' states -> the scoring MLP
    result = dl.fit(dl.TrainState.create(params, OPTIMIZER, jax.random.key(1)),
                    dl.make_train_step(model, dl.softmax_cross_entropy, OPTIMIZER),
                    has_token_dataset(1024, 0), epochs=6, batch_size=32, progress=False)
    scores = dl.evaluate(dl.make_eval_step(model, dl.softmax_cross_entropy), result.state.params,
                         has_token_dataset(300, 1), 32)
    assert scores["accuracy"] > 0.9  # chance is 0.5
    ids, lengths = jnp.array([[5, 2, 7, 0], [9, 4, 0, 0]]), jnp.array([3, 2])
    np.testing.assert_allclose(model.apply(result.state.params, ids, lengths=lengths),
                               model.apply(result.state.params, jnp.pad(ids, ((0, 0), (0, 6))), lengths=lengths),
                               rtol=1e-5, atol=1e-6)
