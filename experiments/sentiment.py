"""Lecture section 3: a recurrent network reads a sentence and says whether it is positive (SST-2).

Words become ids of a vocabulary built from the training sentences (saved beside
the checkpoints), sentences are padded into a few length buckets (one compiled shape
per bucket), and an embedding -> LSTM -> mean over the valid steps -> dense
classifier is trained with Adam (deeper and bidirectional networks overfit more here:
docs/results.md). The GLUE validation split (872 sentences, SST-2's "dev" set) is
scored after every epoch. The `use` subcommand scores sentences of your own with the
networks a run saved.

    python experiments/sentiment.py                            # offline: JAXDL_MANUAL_DIR=DIR, a folder of the original files
    python experiments/sentiment.py --cell gru --layers 2 --bidirectional
    python experiments/sentiment.py --embeddings glove.6B.50d.txt.gz --embed 50   # pretrained word vectors
    python experiments/sentiment.py use "a charming and often affecting journey"
    echo "the plot is a mess" | python experiments/sentiment.py use -
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
import optax

from jaxdl import experiment, runs, viz
from jaxdl.core import summary
from jaxdl.data.text import Vocabulary, bucket_examples, bucket_lengths, encode_sentences, tokenize_words
from jaxdl.generate import classify_sentences
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import CELLS, from_settings, rnn_classifier
from jaxdl.precision import mixed_precision
from jaxdl.train import TrainState, freeze, make_eval_step, make_train_step

# Settings: the shared flags with this script's defaults, then its own (--help lists them).
parser = experiment.experiment_parser(
    __doc__.split("\n\n")[0], out="runs/sentiment", epochs=4, batch_size=64, lr=2e-3, data=True, ensemble=True,
    scales=True,
)
parser.add_argument("--cell", choices=tuple(CELLS), default="lstm", help="recurrent cell")
parser.add_argument("--layers", type=experiment.positive_int, default=1, help="stacked recurrent layers")
parser.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=False,
                    help="also read each sentence backward")
parser.add_argument("--pool", choices=("last", "mean", "max", "attention"), default="mean",
                    help="sentence vector from the states (attention: weights learned by a small MLP)")
parser.add_argument("--embed", type=experiment.positive_int, default=128, help="word vector size")
parser.add_argument("--hidden", type=experiment.positive_int, default=128, help="state size of each direction")
parser.add_argument("--dropout", type=experiment.probability, default=0.3, help="dropout between layers and before the classifier")
parser.add_argument("--embed-dropout", type=experiment.probability, default=0.0, help="dropout on the word vectors")
parser.add_argument("--word-dropout", type=experiment.probability, default=0.1,
                    help="while training, replace each word by <unk> with this probability")
parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW's decoupled weight decay")
parser.add_argument("--min-count", type=experiment.positive_int, default=2,
                    help="words seen fewer times in training become <unk>")
parser.add_argument("--buckets", type=experiment.positive_int, default=4, help="sentence length buckets")
experiment.add_embeddings_flags(parser)
parser.add_argument("--train-examples", type=experiment.positive_int, default=None,
                    help="train on the first N training sentences only (a quick run); default: all")

# Using a saved run: `sentiment.py use SENTENCE... [--out DIR]`
use_parser = experiment.use_parser(
    "sentiment.py", "Print P(positive) of each SENTENCE, averaged over the networks a training run saved.",
    out="runs/sentiment", texts="a sentence to score",
)


def use(argv) -> list[float]:
    """P(positive) of each sentence, averaged over the networks saved in --out (printed too)."""
    args = use_parser.parse_args(argv)
    sentences = experiment.texts_from(args.texts)
    run = runs.load_run(args.out, lambda settings, vocabularies: from_settings(
        rnn_classifier, settings, len(vocabularies["vocabulary"]), 2), vocabularies=("vocabulary",))
    each = classify_sentences(run.model, run.members, run.vocabularies["vocabulary"], sentences)
    positive = each.mean(0)[:, 1]
    for sentence, p in zip(sentences, positive):
        print(f"{p:.3f}  {sentence}")
    return [float(p) for p in positive]


@experiment.script(use=use)
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    experiment.check_embeddings_flags(args, parser)
    if args.weight_decay < 0:
        parser.error(f"--weight-decay must be >= 0, got {args.weight_decay}")
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)

    # Load: the sentences, their words' ids (the vocabulary saved with the run), length buckets
    split = f"train[:{args.train_examples}]" if args.train_examples else "train"
    train, dev = experiment.load_text(args, "glue/sst2", split), experiment.load_text(args, "glue/sst2", "validation")
    vocabulary = runs.run_vocabulary(args.out, "vocabulary.json", resume=args.resume, build=lambda: experiment.with_pretrained_words(
        args, Vocabulary.build((tokenize_words(s, lower=True) for s in train["sentence"]), min_count=args.min_count),
        form=str.lower,
    ))
    train_ids, dev_ids = encode_sentences(vocabulary, train["sentence"]), encode_sentences(vocabulary, dev["sentence"])
    boundaries = bucket_lengths([len(ids) for ids in train_ids], args.buckets)
    train_data = bucket_examples(train_ids, boundaries, columns={"y": train["label"].astype(np.int32)})
    dev_data = bucket_examples(dev_ids, boundaries, columns={"y": dev["label"].astype(np.int32)})
    print(f"SST-2: {train_data.size:,} training and {dev_data.size:,} dev sentences; vocabulary of "
          f"{len(vocabulary):,} words (seen >= {args.min_count} times); length buckets {boundaries}")

    # Model: the classifier of the flags, computing in --dtype
    model = from_settings(rnn_classifier, vars(args), len(vocabulary), 2,
                          embed_init=experiment.pretrained_embeddings(args, vocabulary))
    summary(model, (-1, boundaries[-1]))
    compute = mixed_precision(model, args.dtype)

    # Train: each network from its seed, AdamW with a cosine decay over all the steps
    steps = args.epochs * train_data.steps_per_epoch(args.batch_size)
    optimizer = optax.adamw(optax.cosine_decay_schedule(args.lr, steps), weight_decay=args.weight_decay)
    if args.freeze_embeddings:
        optimizer = freeze(optimizer, "embedding")
    train_step = make_train_step(compute, softmax_cross_entropy, optimizer)
    eval_step = make_eval_step(compute, softmax_cross_entropy)
    results = []
    for i, member in enumerate(runs.members(args.out, args.seed, args.ensemble)):
        if args.ensemble > 1:
            print(f"\nnetwork {i + 1} of {args.ensemble} (seed {member.seed})")
        init_key, state_key = jax.random.split(jax.random.key(member.seed))
        _, params = model.init(init_key, (-1, boundaries[-1]))
        result = experiment.fit_member(args, member, TrainState.create(params, optimizer, state_key), train_step,
                                       train_data, mesh=mesh, eval_step=eval_step, eval_data=dev_data)
        print(experiment.history_table(result.history, "dev"))
        results.append(result)

    # Report: the dev accuracy of each network and of their averaged probabilities
    each = classify_sentences(compute, [result.state.params for result in results], vocabulary, dev["sentence"])
    labels = dev["label"]
    member_accuracies = [float((p.argmax(-1) == labels).mean()) for p in each]
    accuracy = float((each.mean(0).argmax(-1) == labels).mean())
    if len(results) > 1:
        print("\ndev accuracy of each network: " + ", ".join(f"{a:.2%}" for a in member_accuracies))
    history = results[0].history
    metrics = {
        "dev_accuracy": round(accuracy, 4),
        "member_dev_accuracies": [round(a, 4) for a in member_accuracies],
        "best_epoch_dev_accuracy": round(max(r["val_accuracy"] for r in history), 4),  # the first network's
        "train_time_s": round(sum(result.train_time_s for result in results), 2),
        "compile_time_s": round(results[0].compile_time_s, 2),
        "epochs": args.epochs,
    }
    viz.plot_history(history, "accuracy", args.out / "accuracy.png", title="SST-2: accuracy (val = dev set)")
    viz.plot_history(history, "loss", args.out / "loss.png", title="SST-2: loss (val = dev set)")
    path = runs.write_metrics(args.out, metrics)
    who = f"the ensemble of {len(results)}" if len(results) > 1 else "the network"
    print(f"\ndev accuracy of {who}: {accuracy:.2%}; wrote {path}, plots and vocabulary.json to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
