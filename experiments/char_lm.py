"""Lecture section 3: a recurrent network learns to write like Shakespeare, one character at a time (tiny_shakespeare).

The training text is cut into windows of --window characters; at every step an
embedding -> GRU -> dense network predicts the next character (the targets are the
inputs shifted by one), trained with Adam (warmup, cosine decay, gradient clipping).
After every epoch the whole validation split, in windows, is scored: the loss is the
mean cross-entropy per character, in nats. The characters and the training text's most
frequent words are saved beside the checkpoints. The `use` subcommand then writes text
after a prompt, or, for a sentence with a blank (__), says which word fits it best (the
candidate that makes the whole sentence most likely, the lecture's "predict the blank
word"). A prompt or a sentence is read as if it began a line.

    python experiments/char_lm.py                                  # offline: JAXDL_MANUAL_DIR=DIR, a folder of the original files
    python experiments/char_lm.py use "ROMEO:" --length 400 --temperature 0.8
    python experiments/char_lm.py use "To be, or not to __"
    python experiments/char_lm.py use "To be, or not to __" --candidates "be,die,sleep"
    python experiments/char_lm.py --cell lstm --layers 2 --epochs 3 --out runs/char_lm_lstm
    python experiments/char_lm.py --text my_book.txt --out runs/my_book   # any text (last 5% validates)
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

from jaxdl import experiment, runs, viz
from jaxdl.core import summary
from jaxdl.data import DataError
from jaxdl.data.text import (
    UNK_ID,
    Vocabulary,
    VocabularyError,
    frequent_words,
    lm_eval_windows,
    lm_windows,
    load_texts,
    tokenize_chars,
)
from jaxdl.generate import BLANK, generate, rank_fills, start_of_line
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import CELLS, char_language_model, from_settings
from jaxdl.precision import mixed_precision
from jaxdl.tables import format_table
from jaxdl.train import TrainState, make_eval_step, make_train_step

# Settings: the shared flags with this script's defaults, then its own (--help lists them).
parser = experiment.experiment_parser(
    __doc__.split("\n\n")[0], out="runs/char_lm", epochs=6, batch_size=32, lr=5e-3, data=True, scales=True
)
parser.add_argument("--cell", choices=tuple(CELLS), default="gru", help="recurrent cell")
parser.add_argument("--layers", type=experiment.positive_int, default=1, help="stacked recurrent layers")
parser.add_argument("--embed", type=experiment.positive_int, default=64, help="character vector size")
parser.add_argument("--hidden", type=experiment.positive_int, default=256, help="state size")
parser.add_argument("--dropout", type=experiment.probability, default=0.0, help="dropout between layers and before the output")
parser.add_argument("--window", type=experiment.positive_int, default=128,
                    help="characters per training window (the steps back-propagated through)")
parser.add_argument("--warmup", type=experiment.non_negative_int, default=100,
                    help="steps of linear learning-rate warmup (at most a quarter of the run)")
parser.add_argument("--clip", type=experiment.positive_float, default=1.0, help="clip gradients to this global norm")
parser.add_argument("--text", type=Path, default=None,
                    help="train on this UTF-8 text file instead of tiny_shakespeare (its last 5%% validates)")
parser.add_argument("--train-chars", type=experiment.positive_int, default=None,
                    help="train on the first N characters of the training text only (a quick run)")
parser.add_argument("--fill-words", type=experiment.positive_int, default=1500,
                    help="the candidates for a blank: the N most frequent words of the training text (saved with the model)")
parser.add_argument("--end-sample", type=experiment.non_negative_int, default=300, metavar="N",
                    help='after training, write N characters after "ROMEO:" (0: none)')
END_PROMPT = "ROMEO:"  # what the sample after training continues (when the text has its characters)

# Using a saved run: `char_lm.py use TEXT... [--out DIR] [--length N] [--temperature T] [--seed S] [--candidates W,...]`
use_parser = experiment.use_parser(
    "char_lm.py", "Continue each TEXT with the language model a training run saved; for a TEXT with a blank (__), "
    "rank the words that could fill it by the likelihood of the whole sentence.",
    out="runs/char_lm", texts="a prompt to continue, or a sentence with one blank __ to fill",
)
use_parser.add_argument("--length", type=experiment.non_negative_int, default=300, help="characters written after each prompt")
use_parser.add_argument("--temperature", type=float, default=0.8,
                        help="divides the logits before sampling: < 1 is more conservative (a sharper distribution), 0 "
                             "always takes the most likely character")
use_parser.add_argument("--seed", type=experiment.non_negative_int, default=0,
                        help="random seed of the sampling: the same seed writes the same text")
use_parser.add_argument("--candidates", default=None,
                        help="comma-separated words to fill a blank with (default: the most frequent words of the "
                             "training text, saved with the run)")


def use(argv) -> list:
    """Each TEXT's result, in order (printed too): the text written after a prompt, or for a
    sentence with a blank the candidates with their log-likelihoods (nats), most likely first."""
    args = use_parser.parse_args(argv)
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        use_parser.error(f"--temperature must be a finite number >= 0, got {args.temperature}")
    texts = experiment.texts_from(args.texts)
    for text in texts:
        if len(BLANK.findall(text)) > 1:
            use_parser.error(f'a sentence to fill holds exactly one blank "__" (the word to guess), got {text!r}')
    has_blank = [BLANK.search(text) is not None for text in texts]
    candidates = None if args.candidates is None else [word.strip() for word in args.candidates.split(",") if word.strip()]
    if candidates is not None and not (candidates and any(has_blank)):
        use_parser.error("--candidates names the words for a blank: give some, and a TEXT with a blank __")

    run = runs.load_run(args.out, lambda settings, vocabularies: from_settings(
        char_language_model, settings, len(vocabularies["vocabulary"])), vocabularies=("vocabulary",))
    chars, params, context = run.vocabularies["vocabulary"], run.members[0], start_of_line(run.vocabularies["vocabulary"])
    print(f"model of {run.folder} ({run.settings['cell']}, {run.settings['hidden']} units, {len(chars) - 2} characters)")
    if candidates is None and any(has_blank):
        try:
            candidates = list(Vocabulary.load(run.folder / "words.json").tokens[2:])
        except VocabularyError as error:
            raise runs.RunError(f'{error}: give the words to try with --candidates "be,die,sleep"') from None
    stream = from_settings(char_language_model, run.settings, len(chars), stream=True)  # the same params, step by step

    results = []
    for text, blank in zip(texts, has_blank):
        if blank:
            ranked = rank_fills(run.model, params, chars, text, candidates, context=context)
            print(f"\n{text}: the {min(10, len(ranked))} most likely of {len(ranked)} candidates")
            print(format_table(("rank", "word", "log-likelihood (nats)"),
                               [(i, word, f"{score:.2f}") for i, (word, score) in enumerate(ranked[:10], 1)],
                               right=(0, 2)))
            results.append(ranked)
        else:
            written = generate(stream, params, chars, text, length=args.length, seed=args.seed,
                               temperature=args.temperature, context=context)
            print(f"\n{text}{written}")
            results.append(written)
    return results


@experiment.script(use=use)
def main(argv=None) -> dict:
    args = parser.parse_args(argv)
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)

    # Load: the texts, their characters' ids (the vocabulary saved with the run), windows
    began = time.perf_counter()
    train_text, validation_text, source = load_texts(args.text, min_chars=args.window + 1, train_chars=args.train_chars,
                                                     data_dir=args.data_dir, manual_dir=args.manual_dir)
    vocabulary = runs.run_vocabulary(args.out, "vocabulary.json", lambda: Vocabulary.build([tokenize_chars(train_text)]),
                                     resume=args.resume)
    runs.run_vocabulary(args.out, "words.json", lambda: frequent_words(train_text, args.fill_words), resume=args.resume)
    train_ids = np.asarray(vocabulary.encode(tokenize_chars(train_text)), np.int32)
    validation_ids = np.asarray(vocabulary.encode(tokenize_chars(validation_text)), np.int32)
    try:
        train_data = lm_windows(train_ids, args.window)
    except ValueError as error:
        raise DataError(f"the training text is too short: {error}") from None
    validation_data = lm_eval_windows(validation_ids, args.window)
    steps_per_epoch = len(train_data["x"]) // args.batch_size
    if steps_per_epoch == 0:
        raise DataError(f"{len(train_data['x'])} training windows of {args.window} characters make no batch of "
                        f"{args.batch_size}: lower --batch-size or --window, or train on more text")
    unknown = int(np.sum(validation_ids == UNK_ID))
    print(f"{source}: {len(train_text):,} training and {len(validation_text):,} validation characters "
          f"(loaded in {time.perf_counter() - began:.1f} s); {len(vocabulary) - 2} distinct characters"
          f"{f' ({unknown} validation characters unseen in training: <unk>)' if unknown else ''}")
    print(f"{len(train_data['x']):,} training windows of {args.window} characters: {steps_per_epoch} steps of "
          f"{args.batch_size} per epoch, {args.epochs} epochs")

    # Model: the language model of the flags, computing in --dtype
    model = from_settings(char_language_model, vars(args), len(vocabulary))
    summary(model, (-1, args.window))
    compute = mixed_precision(model, args.dtype)

    # Train: Adam with --warmup steps (at most a quarter of the run) up to --lr, then a cosine down
    # to lr/20; gradients clipped to global norm --clip
    steps = args.epochs * steps_per_epoch
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(args.warmup, steps // 4), steps, args.lr / 20)
    optimizer = optax.chain(optax.clip_by_global_norm(args.clip), optax.adam(schedule))
    [member] = runs.members(args.out, args.seed)
    init_key, state_key = jax.random.split(jax.random.key(member.seed))
    _, params = model.init(init_key, (-1, args.window))
    result = experiment.fit_member(
        args, member, TrainState.create(params, optimizer, state_key), make_train_step(compute, softmax_cross_entropy, optimizer),
        train_data, mesh=mesh, eval_step=make_eval_step(compute, softmax_cross_entropy), eval_data=validation_data,
    )

    # Report: the learning curve in nats and bits per character, a sample, the metrics
    history = result.history
    print(format_table(
        ("epoch", "train loss", "val loss (nats/char)", "val bits/char", "val accuracy", "elapsed s"),
        [(r["epoch"], f"{r['train_loss']:.4f}", f"{r['val_loss']:.4f}", f"{r['val_loss'] / math.log(2):.3f}",
          f"{r['val_accuracy']:.2%}", f"{r['elapsed_s']:.1f}") for r in history],
        right=range(6),
    ))
    if args.end_sample:
        prompt = END_PROMPT if all(char in vocabulary for char in END_PROMPT) else ""
        temperature = use_parser.get_default("temperature")
        text = generate(from_settings(char_language_model, vars(args), len(vocabulary), stream=True), result.state.params,
                        vocabulary, prompt, length=args.end_sample, seed=args.seed, temperature=temperature,
                        context=start_of_line(vocabulary))
        print(f"\na sample (temperature {temperature}):\n{prompt}{text}")
    metrics = {
        "val_loss": round(history[-1]["val_loss"], 4),
        "val_accuracy": round(history[-1]["val_accuracy"], 4),
        "best_val_loss": round(min(r["val_loss"] for r in history), 4),
        "train_time_s": round(result.train_time_s, 2),
        "compile_time_s": round(result.compile_time_s, 2),
        "chars_per_s": round(int(result.state.step) * args.batch_size * args.window / max(result.train_time_s, 1e-9), 1),
        "epochs": args.epochs,
        "steps": int(result.state.step),
    }
    viz.plot_history(history, "loss", args.out / "loss.png",
                     title=f"{source}: cross-entropy per character (nats)")
    path = runs.write_metrics(args.out, metrics)
    print(f"\nvalidation loss: {metrics['val_loss']:.4f} nats/char ({metrics['val_loss'] / math.log(2):.3f} bits) "
          f"after {metrics['train_time_s']:.0f} s of training; wrote {path}, loss.png, vocabulary.json and "
          f"words.json to {args.out}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
