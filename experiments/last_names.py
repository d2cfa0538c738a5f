"""Lecture section 3's running example: which words of a text are people's last names (CoNLL-2003)?

Machine learning against deep learning. First, features a person designed (is the
previous word a title such as "Mr", is the word capitalised, is the previous one...:
jaxdl.data.tagging.FEATURES) feed one logistic unit, the perceptron with a smooth
threshold, trained by gradient descent. Then a network designs its own features: word
embeddings beside a character CNN, a 2-layer bidirectional LSTM, and a softmax over the
named-entity tags of every token (people, organisations, locations, miscellaneous, in
BIO form); the last word of each person it finds is a last name. The gold last names are
the last words of CoNLL's PER spans (jaxdl.data.tagging.last_name_labels says the rule
and its limits). Both are scored on the dev and test sets: last-name precision, recall
and F1 per token, and the tagger's entity F1 (exact spans, as CoNLL's conlleval).

    python experiments/last_names.py                           # offline: JAXDL_MANUAL_DIR=../shared/data
    python experiments/last_names.py tag "Yesterday Mr. John Doe met Jane Smith in Paris."
    echo "Smith told Reuters on Monday ." | python experiments/last_names.py tag -
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

from jaxdl import devices, experiment, runs, viz
from jaxdl.checkpoint import CheckpointError, atomic_write, load_checkpoint
from jaxdl.data import label_names
from jaxdl.data.tagging import (
    FEATURES,
    encode_tokens,
    last_name_labels,
    marked_text,
    word_form,
)
from jaxdl.data.text import Buckets, Vocabulary, VocabularyError, bucket_examples, covering_lengths
from jaxdl.core import LayerError, abstract_init, count_params
from jaxdl.entities import feature_last_names, predicted_tags, sentence_features, tag_texts
from jaxdl.losses import binary_cross_entropy, softmax_cross_entropy
from jaxdl.metrics import Scores, best_f1_threshold, binary_scores, span_scores
from jaxdl.models import CELLS, logistic_unit, tagger
from jaxdl.precision import mixed_precision
from jaxdl.tables import format_table
from jaxdl.loop import FitResult, fit
from jaxdl.train import TrainState, make_train_step, predict

MODEL_FLAGS = ("embed", "char_embed", "char_features", "char_width", "hidden", "cell", "layers", "dropout", "word_dropout")
BASELINE = {"epochs": 3, "batch_size": 256, "lr": 0.05}  # logistic regression converges in a few epochs


def parse_args(argv):
    parser = experiment.experiment_parser(
        __doc__.split("\n\n")[0], out="runs/last_names", epochs=12, batch_size=32, lr=2e-3, data=True,
        ensemble=True, scales=True,
    )
    parser.epilog = ('Then "last_names.py tag TEXT" marks the people, their last names and the other entities '
                     "of TEXT with the saved networks (last_names.py tag --help).")
    parser.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="recurrent cell")
    parser.add_argument("--layers", type=experiment.positive_int, default=2, help="stacked bidirectional layers")
    parser.add_argument("--hidden", type=experiment.positive_int, default=200, help="state size of each direction")
    parser.add_argument("--embed", type=experiment.positive_int, default=100, help="word vector size")
    parser.add_argument("--char-embed", type=experiment.positive_int, default=30, help="character vector size")
    parser.add_argument("--char-features", type=experiment.positive_int, default=100,
                        help="character CNN filters: features of each word's spelling")
    parser.add_argument("--char-width", type=experiment.positive_int, default=3, help="characters each filter sees")
    parser.add_argument("--max-chars", type=experiment.positive_int, default=16,
                        help="characters read of each word (its first ones)")
    parser.add_argument("--dropout", type=experiment.probability, default=0.3, help="dropout on word vectors, between layers and on states")
    parser.add_argument("--word-dropout", type=experiment.probability, default=0.05,
                        help="while training, replace each word id by <unk> with this probability")
    parser.add_argument("--min-count", type=experiment.positive_int, default=2,
                        help="word forms seen fewer times in training become <unk> (their characters stay), so the "
                        "network learns to tag words it has never seen")
    parser.add_argument("--buckets", type=experiment.increasing_ints, default=(8, 16, 32, 48),
                        help="sentence lengths that batches are padded to, one compiled step each; one more bucket "
                        "holds the longest sentences")
    parser.add_argument("--train-examples", type=experiment.positive_int, default=None,
                        help="train on the first N training sentences only (a quick run); default: all")
    return parser, parser.parse_args(argv)


def parse_tag_args(argv):
    parser = argparse.ArgumentParser(
        prog="last_names.py tag", description="Mark people (last names between stars) and other entities in text, "
        "with the networks a training run saved.",
    )
    parser.add_argument("text", nargs="+", help="text to tag (- reads lines from stdin)")
    parser.add_argument("--out", type=Path, default=Path("runs/last_names"), help="the training run's folder")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- data
def load_split(split: str, args) -> dict:
    """The sentences of a CoNLL-2003 split: tokens and NER tags, lists of str per sentence,
    and the gold last names (0/1 per token, :func:`last_name_labels`)."""
    data = experiment.load_text(args, "conll2003", split)
    ner = [list(tags) for tags in data["ner"]]
    return {"tokens": [list(t) for t in data["tokens"]], "ner": ner, "last_names": [last_name_labels(t) for t in ner]}


def describe(name: str, split: dict) -> str:
    """One line of counts: sentences, tokens, last names."""
    tokens = sum(len(t) for t in split["tokens"])
    last_names = sum(map(sum, split["last_names"]))
    return f"{name}: {len(split['tokens']):,} sentences, {tokens:,} tokens, {last_names:,} last names"


# ----------------------------------------------------------------- hand-made features
def feature_arrays(split: dict) -> dict[str, np.ndarray]:
    """Every token of a split as a row of FEATURES, ``"x"`` (N, F), and whether it is a last name, ``"y"`` (N,)."""
    return {
        "x": sentence_features(split["tokens"]),
        "y": np.concatenate(split["last_names"]).astype(np.int32),
    }


def train_baseline(train: dict, args, checkpoints: Path, mesh) -> tuple[FitResult, float]:
    """The logistic unit on the hand-made features of every training token, and the
    threshold on its logit that gives the best F1 on those tokens (last names are 3% of
    them: at P = 0.5 the unit would hardly ever say "last name")."""
    data = feature_arrays(train)
    model = logistic_unit()
    init_key, state_key = jax.random.split(jax.random.key(args.seed))
    _, params = model.init(init_key, (-1, len(FEATURES)))
    optimizer = optax.adam(BASELINE["lr"])
    result = fit(
        TrainState.create(params, optimizer, state_key), make_train_step(model, binary_cross_entropy, optimizer),
        data, epochs=BASELINE["epochs"], batch_size=BASELINE["batch_size"], steps_per_call=100,
        checkpoint_dir=checkpoints, resume=args.resume, progress=args.progress,
        config={"features": list(FEATURES), **BASELINE, "seed": args.seed, "train_examples": args.train_examples},
        mesh=mesh,
    )
    logits = predict(model, result.state.params, data["x"], 4096)[:, 0]
    return result, best_f1_threshold(logits, data["y"])


# --------------------------------------------------------------------- the tagger
def token_rows(split: dict, words: Vocabulary, chars: Vocabulary, max_chars: int) -> list[np.ndarray]:
    """The token rows (T, 1 + max_chars) of each sentence of a split (:func:`encode_tokens`)."""
    return [encode_tokens(tokens, words, chars, max_chars) for tokens in split["tokens"]]


def tagger_data(split: dict, rows: list[np.ndarray], tags: list[str], boundaries) -> Buckets:
    """A split as length buckets: ``"x"`` token rows (N_b, T, 1 + C), ``"y"`` tag ids (N_b, T), a mask per token."""
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    return bucket_examples(rows, boundaries, token_columns={"y": [[tag_ids[t] for t in s] for s in split["ner"]]})


def train_tagger(compute, tags: list[str], data: Buckets, args, seed: int, checkpoints: Path, callback,
                 mesh) -> FitResult:
    """One tagger from ``seed``, computing as ``compute`` (the model in the chosen dtype),
    checkpointed in ``checkpoints``, on the devices of ``mesh``; prints its learning curve."""
    init_key, state_key = jax.random.split(jax.random.key(seed))
    _, params = compute.init(init_key, (-1, data.boundaries[-1], 1 + args.max_chars))
    steps = args.epochs * data.steps_per_epoch(args.batch_size)
    optimizer = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(optax.cosine_decay_schedule(args.lr, steps)))
    result = fit(
        TrainState.create(params, optimizer, state_key), make_train_step(compute, softmax_cross_entropy, optimizer),
        data, epochs=args.epochs, batch_size=args.batch_size, checkpoint_dir=checkpoints, resume=args.resume,
        progress=args.progress, callbacks=[callback], mesh=mesh,
        config={**experiment.member_settings(args, seed), "tags": tags, "boundaries": list(data.boundaries)},
    )
    print(experiment.history_table(result.history, "dev", metrics=("f1", "per_f1")))
    return result


def build_tagger(settings: dict, words: Vocabulary, chars: Vocabulary, tags: list[str]):
    """The tagger of a run's settings (its flags, or a checkpoint's config)."""
    return tagger(len(words), len(chars), len(tags), **{name: settings[name] for name in MODEL_FLAGS})


def scores_table(baseline: dict[str, Scores], network: dict[str, Scores]) -> str:
    """Last-name precision, recall and F1 per split, the features' and the network's side by side."""
    rows = []
    for split in baseline:
        for measure in ("precision", "recall", "f1"):
            rows.append((split, measure, f"{getattr(baseline[split], measure):.2%}",
                         f"{getattr(network[split], measure):.2%}"))
    return format_table(
        ("last names", "", "hand-made features + logistic unit", "learned features (BiLSTM tagger)"), rows, right=(2, 3)
    )


def entity_table(entities: dict[str, dict[str, Scores]]) -> str:
    """The tagger's entity F1 per type on dev, and precision, recall and F1 on test."""
    kinds = sorted(set(entities["test"]) - {"overall"}) + ["overall"]
    return format_table(
        ("entity", "dev F1", "test precision", "test recall", "test F1"),
        [(kind, f"{entities['dev'][kind].f1:.2%}", f"{entities['test'][kind].precision:.2%}",
          f"{entities['test'][kind].recall:.2%}", f"{entities['test'][kind].f1:.2%}") for kind in kinds],
        right=range(1, 5),
    )


def train(args, checkpoints: Path, mesh) -> dict:
    """Train and score both approaches, print them side by side, write metrics.json; return the metrics."""
    began = time.perf_counter()
    limit = f"[:{args.train_examples}]" if args.train_examples else ""
    splits = {name: load_split(split, args) for name, split in (("train", f"train{limit}"), ("dev", "dev"), ("test", "test"))}
    for name, split in splits.items():
        print(describe(name, split))

    print(f"\n1. Hand-made features ({', '.join(FEATURES)}) -> one logistic unit")
    baseline, threshold = train_baseline(splits["train"], args, checkpoints / "baseline", mesh)
    if devices.is_main_process():
        atomic_write(args.out / "baseline.json", json.dumps({"threshold": threshold}).encode())
    weights = baseline.state.params["unit"]["w"][:, 0]
    print(format_table(("feature", "weight"), [(f, f"{w:+.2f}") for f, w in zip(FEATURES, weights)], right=(1,)))
    print(f"bias {float(baseline.state.params['unit']['b'][0]):+.2f}; a last name when the weighted sum plus the bias passes "
          f"{threshold:+.2f} (P = {1 / (1 + np.exp(-threshold)):.2f}), the best F1 on the training tokens")
    baseline_scores = {
        name: binary_scores(splits[name]["last_names"], feature_last_names(baseline.state.params, threshold,
                                                                            splits[name]["tokens"]))
        for name in ("dev", "test")
    }

    print("\n2. A BiLSTM tagger learns its own features from words and their characters")
    tags = label_names("conll2003", data_dir=args.data_dir)["ner"]
    train_tokens = splits["train"]["tokens"]
    words = runs.run_vocabulary(args.out, "words.json", resume=args.resume, build=lambda: Vocabulary.build(
        ([word_form(t) for t in tokens] for tokens in train_tokens), min_count=args.min_count
    ))
    chars = runs.run_vocabulary(args.out, "chars.json", resume=args.resume, build=lambda: Vocabulary.build(
        list(token) for tokens in train_tokens for token in tokens
    ))
    boundaries = covering_lengths(args.buckets, max(len(tokens) for split in splits.values() for tokens in split["tokens"]))
    data = {
        name: tagger_data(split, token_rows(split, words, chars, args.max_chars), tags, boundaries)
        for name, split in splits.items()
    }
    model = build_tagger(vars(args), words, chars, tags)
    _, params = abstract_init(model, (-1, boundaries[-1], 1 + args.max_chars))
    print(f"{len(words):,} word forms, {len(chars):,} characters, tags {tags}; {count_params(params):,} parameters; "
          f"length buckets {boundaries}")
    compute = mixed_precision(model, args.dtype)

    def score_dev(state, record):
        entities = span_scores(splits["dev"]["ner"], predicted_tags(compute, [state.params], data["dev"], tags))
        record.update(val_f1=entities["overall"].f1, val_per_f1=entities["PER"].f1)

    results = []
    for i, (seed, folder) in enumerate(runs.members(args.out, args.seed, args.ensemble, name="checkpoints/tagger")):
        if args.ensemble > 1:
            print(f"\nnetwork {i + 1} of {args.ensemble} (seed {seed})")
        results.append(train_tagger(compute, tags, data["train"], args, seed, folder, score_dev, mesh))
    members = [result.state.params for result in results]

    entities, network_scores = {}, {}
    for name in ("dev", "test"):
        predicted = predicted_tags(compute, members, data[name], tags)
        entities[name] = span_scores(splits[name]["ner"], predicted)
        network_scores[name] = binary_scores(splits[name]["last_names"], [last_name_labels(p) for p in predicted])
    print("\nLast names, token by token: the lecture's comparison")
    print(scores_table(baseline_scores, network_scores))
    print("\nThe tagger's entities (exact spans, as CoNLL's conlleval)")
    print(entity_table(entities))

    metrics = {
        "test_last_name_f1": round(network_scores["test"].f1, 4),
        "test_per_f1": round(entities["test"]["PER"].f1, 4),
        "test_f1": round(entities["test"]["overall"].f1, 4),
        "dev_f1": round(entities["dev"]["overall"].f1, 4),
        "dev_last_name_f1": round(network_scores["dev"].f1, 4),
        "dev_per_f1": round(entities["dev"]["PER"].f1, 4),
        "baseline_test_last_name_f1": round(baseline_scores["test"].f1, 4),
        "baseline_dev_last_name_f1": round(baseline_scores["dev"].f1, 4),
        "test_entity_f1": {kind: round(s.f1, 4) for kind, s in entities["test"].items()},
        "train_time_s": round(sum(result.train_time_s for result in results), 2),
        "baseline_train_time_s": round(baseline.train_time_s, 2),
        "compile_time_s": round(results[0].compile_time_s, 2),
        "networks": len(results),
        "epochs": args.epochs,
        "total_time_s": round(time.perf_counter() - began, 2),
    }
    viz.plot_history(results[0].history, "f1", args.out / "dev_f1.png", title="CoNLL-2003: dev entity F1 per epoch")
    viz.plot_history(results[0].history, "loss", args.out / "loss.png", title="CoNLL-2003: training loss")
    path = runs.write_metrics(args.out, metrics)
    print(f"\nwrote {path}, plots, words.json and chars.json to {args.out}")
    return metrics


# ------------------------------------------------------------------------ tagging text
def run_tag(argv) -> list[dict]:
    """Tag each text of ``tag TEXT...`` with the saved tagger (and the baseline's last names)."""
    args = parse_tag_args(argv)
    texts = experiment.texts_from(args.text)
    if not texts:
        sys.exit("error: tag got no text")
    try:
        words, chars = Vocabulary.load(args.out / "words.json"), Vocabulary.load(args.out / "chars.json")
        networks = [load_checkpoint(folder) for folder in runs.saved_members(args.out, name="checkpoints/tagger")]
        baseline = load_checkpoint(args.out / "checkpoints" / "baseline")
        threshold = json.loads((args.out / "baseline.json").read_text())["threshold"]
    except (VocabularyError, CheckpointError, OSError, ValueError, KeyError) as error:
        sys.exit(f"error: {error}. Train first: python experiments/last_names.py --out {args.out}")
    settings, tags = networks[0].config, networks[0].config["tags"]
    model = build_tagger(settings, words, chars, tags)
    members = [network.state["params"] for network in networks]
    try:
        tagged = tag_texts(model, members, texts, words, chars, tags, max_chars=settings["max_chars"],
                           boundaries=settings["boundaries"])
    except LayerError as error:  # networks saved by an older jaxdl, whose tagger named its params otherwise
        sys.exit(f"error: {error}. Train the run in {args.out} again with this version.")
    sentences = [tokens for tokens, _ in tagged]
    guessed = feature_last_names(baseline.state["params"], threshold, sentences)
    results = []
    for (tokens, predicted), flags in zip(tagged, guessed):
        by_features = [token for token, flag in zip(tokens, flags) if flag]
        print(f"network:  {marked_text(tokens, predicted)}")
        print(f"features: last names {', '.join(by_features) or '(none)'}")
        results.append({"tokens": tokens, "tags": predicted, "baseline_last_names": by_features})
    return results


@experiment.script
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["tag"]:
        return run_tag(argv[1:])
    parser, args = parse_args(argv)
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)
    return train(args, args.out / "checkpoints", mesh)


if __name__ == "__main__":
    main()
