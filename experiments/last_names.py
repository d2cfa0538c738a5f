"""Lecture section 3's running example: which words of a text are people's last names (CoNLL-2003)?

Machine learning against deep learning. First, features a person designed (is the
previous word a title such as "Mr", is the word capitalised, is the previous one...:
jaxdl.data.tagging.FEATURES) feed one logistic unit, the perceptron with a smooth
threshold, trained by gradient descent. Then a network designs its own features: word
embeddings beside a character CNN, a 2-layer bidirectional LSTM, and a softmax over the
named-entity tags of every token (people, organisations, locations, miscellaneous, in
BIO form; --crf: a CRF that picks the best sequence of tags for the whole sentence); the
last word of each person it finds is a last name. --embeddings starts the word vectors from pretrained
ones (GloVe), which bring what they learned from billions of words of unlabelled text. The gold last names are
the last words of CoNLL's PER spans (jaxdl.data.tagging.last_name_labels says the rule
and its limits). Both are scored on the dev and test sets: last-name precision, recall
and F1 per token, and the tagger's entity F1 (exact spans, as CoNLL's conlleval).

    python experiments/last_names.py                           # offline: JAXDL_MANUAL_DIR=DIR, a folder of the original files
    python experiments/last_names.py --embeddings glove.6B.50d.txt.gz --embed 50
    python experiments/last_names.py use "Yesterday Mr. John Doe met Jane Smith in Paris."
    echo "Smith told Reuters on Monday ." | python experiments/last_names.py use -
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import numpy as np

from jaxdl import devices, experiment, runs, viz
from jaxdl.checkpoint import atomic_write
from jaxdl.core import abstract_init, count_params
from jaxdl.data import label_names
from jaxdl.data.tagging import (
    FEATURES,
    char_vocabulary,
    last_name_labels,
    load_conll2003,
    marked_text,
    split_summary,
    tagger_data,
    token_rows,
    word_form,
    word_vocabulary,
)
from jaxdl.data.text import covering_lengths
from jaxdl.entities import (
    build_tagger,
    entity_table,
    feature_arrays,
    feature_last_names,
    fit_feature_unit,
    last_name_table,
    predicted_tags,
    tag_texts,
    tagger_loss,
    tagger_optimizer,
)
from jaxdl.metrics import binary_scores, span_scores
from jaxdl.models import CELLS, logistic_unit
from jaxdl.precision import mixed_precision
from jaxdl.runs import RunError
from jaxdl.tables import format_table
from jaxdl.train import TrainState, freeze, make_train_step

# Settings: the shared flags with this script's defaults, then the tagger's (--help lists them).
parser = experiment.experiment_parser(
    __doc__.split("\n\n")[0], out="runs/last_names", epochs=12, batch_size=32, lr=2e-3, data=True,
    ensemble=True, scales=True,
)
parser.epilog = ('Then "last_names.py use TEXT" marks the people, their last names and the other entities '
                 "of TEXT with the saved networks (last_names.py use --help).")
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
parser.add_argument("--dropout", type=experiment.probability, default=0.3,
                    help="dropout on word vectors, between layers and on states")
parser.add_argument("--word-dropout", type=experiment.probability, default=0.05,
                    help="while training, replace each word id by <unk> with this probability")
parser.add_argument("--min-count", type=experiment.positive_int, default=2,
                    help="word forms seen fewer times in training become <unk> (their characters stay), so the "
                    "network learns to tag words it has never seen")
parser.add_argument("--buckets", type=experiment.increasing_ints, default=(8, 16, 32, 48),
                    help="sentence lengths that batches are padded to, one compiled step each; one more bucket "
                    "holds the longest sentences")
parser.add_argument("--crf", action=argparse.BooleanOptionalAction, default=True,
                    help="end in a CRF that scores whole tag sequences (Viterbi decoding, IOB2 rules), "
                    "instead of a softmax per token")
experiment.add_embeddings_flags(parser)
parser.add_argument("--train-examples", type=experiment.positive_int, default=None,
                    help="train on the first N training sentences only (a quick run); default: all")

# Use mode: the saved networks, and the hand-made features' unit, on text
use_parser = experiment.use_parser(
    "last_names.py", "Mark people (last names between stars) and other entities in text with the networks a "
    "training run saved, and list the last names the hand-made features find.",
    out="runs/last_names", texts="a text to tag",
)


def use(argv) -> list[dict]:
    """Tag each text with the run's tagger (its networks averaged), and list the last names
    of the features' logistic unit; return each text's tokens, tags and those last names."""
    args = use_parser.parse_args(argv)
    texts = experiment.texts_from(args.texts)
    run = runs.load_run(args.out, build_tagger, vocabularies=("words", "chars"), name="checkpoints/tagger")
    unit = runs.load_run(args.out, lambda settings, vocabularies: logistic_unit(), name="checkpoints/baseline")
    try:
        threshold = json.loads((args.out / "baseline.json").read_text())["threshold"]
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"the run in {args.out} is not whole: no threshold in baseline.json ({error})") from None

    tagged = tag_texts(run.model, run.members, texts, run.vocabularies["words"], run.vocabularies["chars"],
                       run.settings["tags"], max_chars=run.settings["max_chars"], boundaries=run.settings["boundaries"])
    guessed = feature_last_names(unit.members[0], threshold, [tokens for tokens, _ in tagged])
    results = []
    for (tokens, tags), flags in zip(tagged, guessed):
        by_features = [token for token, flag in zip(tokens, flags) if flag]
        print(f"network:  {marked_text(tokens, tags)}")
        print(f"features: last names {', '.join(by_features) or '(none)'}")
        results.append({"tokens": tokens, "tags": tags, "baseline_last_names": by_features})
    return results


@experiment.script(use=use)
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    experiment.check_embeddings_flags(args, parser)
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)
    began = time.perf_counter()

    # Load: each sentence's tokens, NER tags and gold last names
    limit = f"[:{args.train_examples}]" if args.train_examples else ""
    splits = {name: load_conll2003(split, data_dir=args.data_dir, manual_dir=args.manual_dir)
              for name, split in (("train", f"train{limit}"), ("dev", "dev"), ("test", "test"))}
    for name, split in splits.items():
        print(split_summary(name, split))

    # 1. Machine learning: the hand-made features of every training token -> one logistic unit
    print(f"\n1. Hand-made features ({', '.join(FEATURES)}) -> one logistic unit")
    baseline, threshold = fit_feature_unit(
        feature_arrays(splits["train"]["tokens"], splits["train"]["last_names"]), seed=args.seed,
        config={"train_examples": args.train_examples}, checkpoint_dir=args.out / "checkpoints" / "baseline",
        resume=args.resume, progress=args.progress, mesh=mesh,
    )
    if devices.is_main_process():
        atomic_write(args.out / "baseline.json", json.dumps({"threshold": threshold}).encode())
    unit = baseline.state.params["unit"]
    print(format_table(("feature", "weight"), [(f, f"{w:+.2f}") for f, w in zip(FEATURES, unit["w"][:, 0])], right=(1,)))
    print(f"bias {float(unit['b'][0]):+.2f}; a last name when the weighted sum plus the bias passes "
          f"{threshold:+.2f} (P = {1 / (1 + np.exp(-threshold)):.2f}), the best F1 on the training tokens")
    baseline_scores = {
        name: binary_scores(splits[name]["last_names"],
                            feature_last_names(baseline.state.params, threshold, splits[name]["tokens"]))
        for name in ("dev", "test")
    }

    # 2. Deep learning: a tagger of words and their characters, in length buckets
    print("\n2. A BiLSTM tagger learns its own features from words and their characters")
    tags = label_names("conll2003", data_dir=args.data_dir)["ner"]
    train_tokens = splits["train"]["tokens"]
    words = runs.run_vocabulary(args.out, "words.json", resume=args.resume,
                                build=lambda: experiment.with_pretrained_words(
                                    args, word_vocabulary(train_tokens, min_count=args.min_count), form=word_form))
    chars = runs.run_vocabulary(args.out, "chars.json", resume=args.resume, build=lambda: char_vocabulary(train_tokens))
    boundaries = covering_lengths(args.buckets, max(len(tokens) for split in splits.values() for tokens in split["tokens"]))
    data = {name: tagger_data(token_rows(split["tokens"], words, chars, args.max_chars), split["ner"], tags, boundaries)
            for name, split in splits.items()}
    # The tags and the buckets join the run's settings: saved with its checkpoints, `use` builds the tagger from them
    vars(args).update(tags=tags, boundaries=list(boundaries))
    model = build_tagger(vars(args), {"words": words, "chars": chars},
                         embed_init=experiment.pretrained_embeddings(args, words))
    input_shape = (-1, boundaries[-1], 1 + args.max_chars)
    print(f"{len(words):,} word forms, {len(chars):,} characters, tags {tags}; "
          f"{count_params(abstract_init(model, input_shape)[1]):,} parameters; length buckets {boundaries}")
    compute = mixed_precision(model, args.dtype)

    def score_dev(state, record):
        entities = span_scores(splits["dev"]["ner"], predicted_tags(compute, [state.params], data["dev"], tags))
        record.update(val_f1=entities["overall"].f1, val_per_f1=entities["PER"].f1)

    # Train: each network from its seed, Adam with a cosine decay over all the steps
    optimizer = tagger_optimizer(args.lr, args.epochs * data["train"].steps_per_epoch(args.batch_size))
    if args.freeze_embeddings:
        optimizer = freeze(optimizer, "features/words/embedding")
    train_step = make_train_step(compute, tagger_loss(vars(args)), optimizer)
    results = []
    for i, member in enumerate(runs.members(args.out, args.seed, args.ensemble, name="checkpoints/tagger")):
        if args.ensemble > 1:
            print(f"\nnetwork {i + 1} of {args.ensemble} (seed {member.seed})")
        init_key, state_key = jax.random.split(jax.random.key(member.seed))
        _, params = compute.init(init_key, input_shape)
        result = experiment.fit_member(args, member, TrainState.create(params, optimizer, state_key), train_step,
                                       data["train"], mesh=mesh, callbacks=[score_dev])
        print(experiment.history_table(result.history, "dev", metrics=("f1", "per_f1")))
        results.append(result)
    members = [result.state.params for result in results]

    # Report: both approaches' last names side by side, and the tagger's entities
    entities, network_scores = {}, {}
    for name in ("dev", "test"):
        predicted = predicted_tags(compute, members, data[name], tags)
        entities[name] = span_scores(splits[name]["ner"], predicted)
        network_scores[name] = binary_scores(splits[name]["last_names"], [last_name_labels(p) for p in predicted])
    print("\nLast names, token by token: the lecture's comparison")
    print(last_name_table(baseline_scores, network_scores))
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


if __name__ == "__main__":
    main(sys.argv[1:])
