"""Lecture section 3: a recurrent network learns to write like Shakespeare, one character at a time (tiny_shakespeare).

The training text is cut into windows of --window characters; at every step an
embedding -> GRU -> dense network predicts the next character (the targets are the
inputs shifted by one), trained with Adam (warmup, cosine decay, gradient clipping).
After every epoch the whole validation split, in windows, is scored: the loss is the
mean cross-entropy per character, in nats. The characters and the training text's most
frequent words are saved beside the checkpoints; the saved model then writes text
(--sample) or says which word fits a blank best (--fill: the candidate that makes the
whole sentence most likely, the lecture's "predict the blank word"). A prompt or a
sentence is read as if it began a line.

    python experiments/char_lm.py                                  # offline: JAXDL_MANUAL_DIR=../shared/data
    python experiments/char_lm.py --sample 400 --prompt "ROMEO:" --temperature 0.8
    python experiments/char_lm.py --fill "To be, or not to __"
    python experiments/char_lm.py --fill "To be, or not to __" --candidates "be,die,sleep"
    python experiments/char_lm.py --cell lstm --layers 2 --epochs 3 --out runs/char_lm_lstm
    python experiments/char_lm.py --text my_book.txt --out runs/my_book   # any text (last 5% validates)
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

from jaxdl import experiment, runs, viz
from jaxdl.checkpoint import CheckpointError, load_checkpoint
from jaxdl.core import Layer, summary
from jaxdl.data import load_text_corpus
from jaxdl.data.text import UNK_ID, Vocabulary, VocabularyError, lm_eval_windows, lm_windows, tokenize_chars
from jaxdl.generate import BLANK, generate, rank_fills
from jaxdl.loop import fit
from jaxdl.losses import softmax_cross_entropy
from jaxdl.models import CELLS, char_language_model
from jaxdl.precision import mixed_precision
from jaxdl.tables import format_table
from jaxdl.train import TrainState, make_eval_step, make_train_step

MODEL_FLAGS = ("embed", "hidden", "cell", "layers", "dropout")
USE_FLAGS = ("sample", "prompt", "temperature", "fill", "candidates", "end_sample")  # not part of a training run's settings
# A word: letters with inner apostrophes (o'er, thou'rt); not the fragment of an elision ('t, o', 'tis).
WORD = re.compile(r"(?<![\w'’])[^\W\d_]+(?:['’][^\W\d_]+)*(?![\w'’])")
CONTEXT_CHARS = ("\n", " ")  # what a prompt or a sentence is read after: the start of a line


def parse_args(argv):
    parser = experiment.experiment_parser(
        __doc__.split("\n\n")[0], out="runs/char_lm", epochs=6, batch_size=32, lr=5e-3, data=True, scales=True
    )
    parser.add_argument("--cell", choices=tuple(CELLS), default="gru", help="recurrent cell")
    parser.add_argument("--layers", type=experiment.positive_int, default=1, help="stacked recurrent layers")
    parser.add_argument("--embed", type=experiment.positive_int, default=64, help="character vector size")
    parser.add_argument("--hidden", type=experiment.positive_int, default=256, help="state size")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout between layers and before the output")
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
                        help="candidates of --fill: the N most frequent words of the training text (saved with the model)")
    parser.add_argument("--end-sample", type=experiment.non_negative_int, default=300, metavar="N",
                        help="after training, write N characters after --prompt (0: none)")
    use = parser.add_argument_group("using a trained model (from --out), instead of training")
    use.add_argument("--sample", type=experiment.non_negative_int, default=None, metavar="N",
                     help="write N characters after --prompt")
    use.add_argument("--prompt", default="ROMEO:", help="text the sample continues")
    use.add_argument("--temperature", type=float, default=0.8,
                     help="divides the logits before sampling: < 1 is more conservative (a sharper distribution), 0 always "
                          "takes the most likely character")
    use.add_argument("--fill", metavar="SENTENCE",
                     help="rank the words that could fill the blank (__) of SENTENCE by the likelihood of the sentence")
    use.add_argument("--candidates", default=None,
                     help="comma-separated words for --fill (default: the most frequent words of the training text)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout is a probability of dropping, in [0, 1); got {args.dropout}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        parser.error(f"--temperature must be a finite number >= 0, got {args.temperature}")
    if args.fill is not None and len(BLANK.findall(args.fill)) != 1:
        parser.error(f'--fill needs a sentence with exactly one blank "__" (the word to guess), '
                     f'e.g. --fill "To be, or not to __"; got {args.fill!r}')
    if args.candidates is not None and args.fill is None:
        parser.error("--candidates goes with --fill")
    return parser, args


# --------------------------------------------------------------------------- model
def build_model(vocabulary: Vocabulary, settings: dict, *, stream: bool = False) -> Layer:
    """The network of the run's settings; with ``stream``, the same network reading one
    piece of text after another (its recurrent state carried between calls)."""
    return char_language_model(len(vocabulary), stream=stream, **{name: settings[name] for name in MODEL_FLAGS})


def context(vocabulary: Vocabulary) -> tuple[str]:
    """The character a prompt or sentence is read after: a newline (a new line begins),
    else a space, else the most frequent character."""
    known = [char for char in CONTEXT_CHARS if char in vocabulary]
    return (known[0] if known else vocabulary.tokens[2],)


# ---------------------------------------------------------------------- using a model
def use_model(args) -> dict:
    """--sample and --fill, with the latest checkpoint and the vocabulary in --out."""
    try:
        vocabulary = Vocabulary.load(args.out / "vocabulary.json")
        checkpoint = load_checkpoint(args.out / "checkpoints")
    except (VocabularyError, CheckpointError) as error:
        sys.exit(f"error: {error}. Train a model first: python experiments/char_lm.py --out {args.out}")
    model = build_model(vocabulary, checkpoint.config)
    params = checkpoint.state["params"]
    print(f"model of {checkpoint.path} ({checkpoint.config['cell']}, {checkpoint.config['hidden']} units, "
          f"{len(vocabulary) - 2} characters)")
    result = {}
    if args.sample is not None:
        stream = build_model(vocabulary, checkpoint.config, stream=True)
        text = generate(stream, params, vocabulary, args.prompt, length=args.sample, seed=args.seed,
                        temperature=args.temperature, context=context(vocabulary))
        print(f"\n{args.prompt}{text}")
        result["sample"] = text
    if args.fill is not None:
        if args.candidates is not None:
            candidates = args.candidates.split(",")
        else:
            try:
                candidates = list(Vocabulary.load(args.out / "words.json").tokens[2:])
            except VocabularyError as error:
                sys.exit(f"error: {error}: give the words to try with --candidates \"be,die,sleep\"")
        try:
            ranked = rank_fills(model, params, vocabulary, args.fill, candidates, context=context(vocabulary))
        except ValueError as error:
            sys.exit(f"error: {error}")
        print(f"\n{args.fill}: the {min(10, len(ranked))} most likely of {len(ranked)} candidates")
        print(format_table(("rank", "word", "log-likelihood (nats)"),
                           [(i, word, f"{score:.2f}") for i, (word, score) in enumerate(ranked[:10], 1)],
                           right=(0, 2)))
        result["fill"] = ranked
    return result


# --------------------------------------------------------------------------- training
def load_texts(args) -> tuple[str, str, str]:
    """(training text, validation text, where they come from)."""
    if args.text is not None:
        try:
            text = args.text.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            sys.exit(f"error: cannot read --text {args.text}: {error}")
        cut = len(text) - max(len(text) // 20, args.window + 1)
        if cut < args.window + 1:
            sys.exit(f"error: --text {args.text} holds {len(text):,} characters: too few for windows of "
                     f"{args.window} (it needs {2 * (args.window + 1)})")
        train, validation, source = text[:cut], text[cut:], str(args.text)
    else:
        train, validation = (load_text_corpus("tiny_shakespeare", split, data_dir=args.data_dir,
                                              manual_dir=args.manual_dir) for split in ("train", "validation"))
        source = "tiny_shakespeare"
    return (train[: args.train_chars] if args.train_chars else train), validation, source


def make_optimizer(args, steps: int) -> optax.GradientTransformation:
    """Adam with --warmup steps (at most a quarter of the ``steps``) up to --lr, then a cosine
    down to lr/20; gradients clipped to global norm --clip."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(args.warmup, steps // 4), steps, args.lr / 20)
    return optax.chain(optax.clip_by_global_norm(args.clip), optax.adam(schedule))


def words_of(text: str, count: int) -> Vocabulary:
    """The ``count`` most frequent words of ``text`` (case kept), as a vocabulary file holds them."""
    return Vocabulary.build([WORD.findall(text)], max_size=count + 2)


@experiment.script
def main(argv=None) -> dict:
    parser, args = parse_args(argv)
    if args.sample is not None or args.fill is not None:
        return use_model(args)
    mesh = experiment.device_mesh(args, parser)
    experiment.new_or_resumed(args, parser)
    began = time.perf_counter()
    train_text, validation_text, source = load_texts(args)
    vocabulary = runs.run_vocabulary(args.out, "vocabulary.json", lambda: Vocabulary.build([tokenize_chars(train_text)]),
                                     resume=args.resume)
    runs.run_vocabulary(args.out, "words.json", lambda: words_of(train_text, args.fill_words), resume=args.resume)  # --fill
    train_ids = np.asarray(vocabulary.encode(tokenize_chars(train_text)), np.int32)
    validation_ids = np.asarray(vocabulary.encode(tokenize_chars(validation_text)), np.int32)
    try:
        train_data = lm_windows(train_ids, args.window)
    except ValueError as error:
        sys.exit(f"error: the training text is too short: {error}")
    validation_data = lm_eval_windows(validation_ids, args.window)
    steps_per_epoch = len(train_data["x"]) // args.batch_size
    if steps_per_epoch == 0:
        sys.exit(f"error: {len(train_data['x'])} training windows of {args.window} characters make no batch of "
                 f"{args.batch_size}: lower --batch-size or --window, or train on more text")
    unknown = int(np.sum(validation_ids == UNK_ID))
    print(f"{source}: {len(train_text):,} training and {len(validation_text):,} validation characters "
          f"(loaded in {time.perf_counter() - began:.1f} s); {len(vocabulary) - 2} distinct characters"
          f"{f' ({unknown} validation characters unseen in training: <unk>)' if unknown else ''}")
    print(f"{len(train_data['x']):,} training windows of {args.window} characters: {steps_per_epoch} steps of "
          f"{args.batch_size} per epoch, {args.epochs} epochs")

    model = build_model(vocabulary, vars(args))
    summary(model, (-1, args.window))
    steps = args.epochs * steps_per_epoch
    optimizer = make_optimizer(args, steps)
    init_key, state_key = jax.random.split(jax.random.key(args.seed))
    _, params = model.init(init_key, (-1, args.window))
    compute = mixed_precision(model, args.dtype)
    result = fit(
        TrainState.create(params, optimizer, state_key), make_train_step(compute, softmax_cross_entropy, optimizer),
        train_data, epochs=args.epochs, batch_size=args.batch_size,
        eval_step=make_eval_step(compute, softmax_cross_entropy), eval_data=validation_data,
        checkpoint_dir=args.out / "checkpoints", resume=args.resume, progress=args.progress,
        config={k: v for k, v in runs.identity(vars(args)).items() if k not in USE_FLAGS}, mesh=mesh,
    )
    history = result.history
    print(format_table(
        ("epoch", "train loss", "val loss (nats/char)", "val bits/char", "val accuracy", "elapsed s"),
        [(r["epoch"], f"{r['train_loss']:.4f}", f"{r['val_loss']:.4f}", f"{r['val_loss'] / math.log(2):.3f}",
          f"{r['val_accuracy']:.2%}", f"{r['elapsed_s']:.1f}") for r in history],
        right=range(6),
    ))
    if args.end_sample:
        prompt = args.prompt if all(char in vocabulary for char in args.prompt) else ""
        text = generate(build_model(vocabulary, vars(args), stream=True), result.state.params, vocabulary, prompt,
                        length=args.end_sample, seed=args.seed, temperature=args.temperature,
                        context=context(vocabulary))
        print(f"\na sample (temperature {args.temperature}):\n{prompt}{text}")
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
