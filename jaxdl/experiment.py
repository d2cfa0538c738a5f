"""What every experiment script shares on its command line: the flags, the device mesh they
ask for, loading the datasets they name, the settings that identify a run, the learning
curve printed, and errors turned into one line (the run folder itself: :mod:`jaxdl.runs`)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import jax
from jax.sharding import Mesh

from jaxdl import devices, runs
from jaxdl.checkpoint import CheckpointError
from jaxdl.core import LayerError
from jaxdl.data import (
    DataError,
    ImageClassification,
    load_image_classification,
    load_text_dataset,
)
from jaxdl.data.text import Vocabulary, VocabularyError
from jaxdl.data.vectors import SOURCES, VectorsError, extended_vocabulary, pretrained, pretrained_table
from jaxdl.layers import Initializer
from jaxdl.loop import FitResult, Interrupted, NonFiniteLossError, ResumeError, fit
from jaxdl.precision import DTYPES
from jaxdl.runs import RunError
from jaxdl.tables import format_table
from jaxdl.train import TrainState


def _argument_type(convert, accept, expected: str):
    """An argparse type: ``convert(text)`` that must satisfy ``accept``, else a clear usage error."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _argument_type(int, lambda v: v > 0, "a positive integer")
positive_float = _argument_type(float, lambda v: 0.0 < v < float("inf"), "a positive finite number")
non_negative_int = _argument_type(int, lambda v: v >= 0, "an integer >= 0")
probability = _argument_type(float, lambda v: 0.0 <= v < 1.0, "a probability of dropping, in [0, 1)")
fraction = _argument_type(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")
decay = _argument_type(float, lambda v: 0.0 < v < 1.0, "a decay in (0, 1), such as 0.999")
non_negative_float = _argument_type(float, lambda v: 0.0 <= v < float("inf"), "a finite number >= 0")


def _blocks(text: str) -> tuple[tuple[int, ...], ...]:
    blocks = []
    for entry in text.split(","):
        width, _, count = entry.strip().partition("x")
        blocks.append((int(width),) * int(count or 1))
    return tuple(blocks)


conv_blocks = _argument_type(
    _blocks, lambda blocks: all(w > 0 for block in blocks for w in block) and all(blocks),
    "blocks of convolutions separated by commas, each WIDTH or WIDTHxCOUNT, such as 32x2,64x2",
)
increasing_ints = _argument_type(
    lambda text: tuple(int(v) for v in text.split(",")),
    lambda v: v[0] > 0 and all(a < b for a, b in zip(v, v[1:])),
    "increasing positive integers separated by commas, such as 8,16,32",
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except ``None`` (whose help says what it means)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def experiment_parser(
    description: str,
    *,
    out: str,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    trains: bool = True,
    data: bool = False,
    ensemble: bool = False,
    scales: bool = False,
) -> argparse.ArgumentParser:
    """A parser with the flags experiments share.

    Always ``--seed --out``; ``--epochs --batch-size --lr`` for those given a default;
    ``--resume --progress`` when the experiment ``trains``; ``--manual-dir --data-dir``
    when it loads a TFDS ``data`` set; ``--ensemble`` when it can average several networks;
    ``--devices --model-shards --dtype`` and the multi-process flags when it ``scales``
    (see :func:`device_mesh`; ``--dtype`` is for :func:`jaxdl.precision.mixed_precision`).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=_HelpFormatter
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed: the same seed gives the same run")
    if epochs is not None:
        parser.add_argument("--epochs", type=positive_int, default=epochs, help="passes over the training data")
    if batch_size is not None:
        parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="examples per step")
    if lr is not None:
        parser.add_argument("--lr", type=positive_float, default=lr, help="learning rate")
    outputs = "plots, checkpoints and metrics.json" if trains else "plots and metrics.json"
    parser.add_argument("--out", type=Path, default=Path(out), help=f"folder for {outputs}")
    if trains:
        parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out/checkpoints")
        parser.add_argument(
            "--progress", action=argparse.BooleanOptionalAction, default=None,
            help="show progress bars (default: when the terminal is interactive)",
        )
    if ensemble:
        parser.add_argument("--ensemble", type=positive_int, default=1,
                            help="train this many networks (seeds --seed, --seed+1, ...) and average their predictions")
    if scales:
        _add_scaling_flags(parser)
    if data:
        parser.add_argument(
            "--manual-dir", type=Path, default=None,
            help="folder of the datasets' original files, one folder per TFDS builder, to prepare "
            "them without a network (default: $JAXDL_MANUAL_DIR, else download)",
        )
        parser.add_argument(
            "--data-dir", type=Path, default=None,
            help="where TFDS keeps prepared datasets (default: TFDS's own, $TFDS_DATA_DIR or ~/tensorflow_datasets)",
        )
    return parser


def _add_scaling_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("devices, hosts and precision (docs/scaling.md)")
    group.add_argument("--devices", type=positive_int, default=None,
                       help="train data-parallel on this many devices (default: all that JAX sees)")
    group.add_argument("--model-shards", type=positive_int, default=1,
                       help="also split the largest parameters over this many devices (a 'model' mesh axis)")
    group.add_argument("--dtype", choices=DTYPES, default="float32",
                       help="compute dtype; parameters, optimizer and loss stay float32")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="multi-process run: address of process 0 (default: $JAX_COORDINATOR_ADDRESS, "
                       "or the cluster's, e.g. SLURM's, when launched on several processes)")
    group.add_argument("--num-processes", type=positive_int, default=None, help="multi-process run: how many")
    group.add_argument("--process-id", type=non_negative_int, default=None, help="multi-process run: this one's rank")


def device_mesh(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Mesh:
    """Start the multi-process runtime if this is one of several processes, then the mesh of
    ``--devices`` and ``--model-shards`` (a bad combination is a usage error); prints it."""
    try:
        devices.initialize(args.coordinator, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as error:  # JAX's own: a missing process count, no coordinator
        parser.error(f"cannot start the multi-process run: {error}")
    try:
        mesh = devices.make_mesh(args.devices, args.model_shards)
        devices.check_batch_size(args.batch_size, mesh)
    except devices.MeshError as error:
        parser.error(str(error))
    processes = f", {jax.process_count()} processes (this is {jax.process_index()})" if jax.process_count() > 1 else ""
    print(f"devices: {mesh.size} x {mesh.devices.flat[0].platform} as data {mesh.shape[devices.DATA]} x "
          f"model {mesh.shape[devices.MODEL]}{processes}; compute in {args.dtype}")
    return mesh


def new_or_resumed(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse (as a usage error) to start a new run in an ``--out`` that holds one, without ``--resume``."""
    try:
        runs.refuse_an_old_run(args.out, args.resume)
    except ResumeError as error:
        parser.error(str(error))


def member_settings(args: argparse.Namespace, seed: int) -> dict:
    """The settings that identify one network of the run (:func:`jaxdl.runs.identity` of the
    flags), with its seed; the ensemble's size is not one of them."""
    return {**{k: v for k, v in runs.identity(vars(args)).items() if k != "ensemble"}, "seed": seed}


def fit_member(args: argparse.Namespace, member: runs.Member, state: TrainState, train_step: Callable, data, *,
               mesh: Mesh | None = None, **fit_kwargs) -> FitResult:
    """:func:`jaxdl.loop.fit` of one network of the run, as the shared flags say: ``--epochs``
    of ``--batch-size``, checkpoints in the member's folder, ``--resume``, ``--progress``,
    the member's settings as the run's identity, on ``mesh``; ``fit_kwargs`` for the rest."""
    return fit(state, train_step, data, epochs=args.epochs, batch_size=args.batch_size, checkpoint_dir=member.folder,
               resume=args.resume, progress=args.progress, config=member_settings(args, member.seed), mesh=mesh,
               **fit_kwargs)


USE = "use"
"""The subcommand that uses a saved run instead of training one: ``script.py use TEXT... [--out DIR]``."""


def use_parser(script: str, description: str, *, out: str, texts: str) -> argparse.ArgumentParser:
    """The command line of ``script``'s use mode, the same for every script: the ``texts`` to use
    the run on (``-`` reads one per line from stdin) and ``--out``, the run's folder (default
    ``out``). A script adds its own options (a temperature, a length) to it."""
    parser = argparse.ArgumentParser(prog=f"{script} {USE}", description=description, formatter_class=_HelpFormatter)
    parser.add_argument("texts", nargs="+", metavar="TEXT", help=f"{texts} (- reads one per line from stdin)")
    parser.add_argument("--out", type=Path, default=Path(out), help="the folder of the trained run to use")
    return parser


def texts_from(arguments: Sequence[str]) -> list[str]:
    """The non-blank texts given on the command line, stripped; each ``-`` reads one text per line
    of stdin. None at all is a :class:`jaxdl.runs.RunError`."""
    texts = [line.strip() for text in arguments for line in (sys.stdin if text == "-" else [text]) if line.strip()]
    if not texts:
        raise RunError("no text to use the run on: give one or more, or - to read lines from stdin")
    return texts


def history_table(history: list[dict], val: str = "val", metrics: Sequence[str] = ("loss", "accuracy")) -> str:
    """The learning curve of ``fit``'s history as a table: the training loss, then each
    ``val_<metric>`` of ``metrics`` (losses as numbers, other metrics as percentages);
    ``val`` names the evaluation set ("dev", "test"); a metric an epoch lacks (a run
    interrupted before it was computed) shows as "-"."""
    def cell(name, value):
        if value is None:
            return "-"
        return f"{value:.4f}" if name.endswith("loss") else f"{value:.2%}"

    return format_table(
        ("epoch", "train loss", *(f"{val} {metric.replace('_', ' ')}" for metric in metrics), "elapsed s"),
        [(r["epoch"], cell("loss", r["train_loss"]), *(cell(m, r.get(f"val_{m}")) for m in metrics),
          f"{r['elapsed_s']:.1f}") for r in history],
        right=range(len(metrics) + 3),
    )


# What a user can put right: a missing dataset, a corrupt checkpoint, a run resumed with other
# settings, a bad input to a layer, a learning rate that diverges.
USER_ERRORS = (DataError, CheckpointError, ResumeError, RunError, VocabularyError, VectorsError, LayerError,
               NonFiniteLossError)


@contextlib.contextmanager
def reported_errors():
    """Around a script's work: an error a user can put right (:data:`USER_ERRORS`) ends the
    run with one ``error:`` line and exit status 1, Ctrl-C with where the run was saved and
    how to go on (status 130), instead of a traceback."""
    try:
        yield
    except Interrupted as stop:
        saved = f"; the run is saved in {stop.checkpoint}: the same command with --resume goes on" if stop.checkpoint else ""
        print(f"\ninterrupted{saved}", file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as error:
        raise SystemExit(f"error: {error}") from None


def script(main: Callable | None = None, *, use: Callable | None = None) -> Callable:
    """A script's ``main(argv)``, run inside :func:`reported_errors`: its user's errors end it with
    one line. With ``use``, ``script.py use ...`` calls ``use(argv)`` with what follows ``use``
    instead (``@experiment.script(use=use)``)."""
    if main is None:
        return functools.partial(script, use=use)

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None):
        argv = sys.argv[1:] if argv is None else list(argv)
        with reported_errors():
            if use is not None and argv[:1] == [USE]:
                return use(argv[1:])
            return main(argv)

    return run


def load_images(args: argparse.Namespace, name: str) -> ImageClassification:
    """Dataset ``name`` from the ``--data-dir``/``--manual-dir`` flags, its training split cut
    to ``--train-examples`` when the script has that flag (a DataError if it cannot be had)."""
    began = time.perf_counter()
    data = load_image_classification(name, data_dir=args.data_dir, manual_dir=args.manual_dir,
                                     train_examples=getattr(args, "train_examples", None))
    print(f"{name}: {len(data.train['y']):,} training and {len(data.test['y']):,} test images "
          f"of {data.train['x'].shape[1:]}, {data.num_classes} classes (loaded in {time.perf_counter() - began:.1f} s)")
    return data


def add_embeddings_flags(parser: argparse.ArgumentParser) -> None:
    """``--embeddings PATH`` and ``--freeze-embeddings``: word vectors from a pretrained file
    (checked by :func:`check_embeddings_flags`, read by :func:`pretrained_embeddings`)."""
    parser.add_argument("--embeddings", type=Path, default=None, metavar="PATH",
                        help="start the word vectors from this file of pretrained vectors (GloVe, word2vec or "
                        "fastText text, plain or gzipped); --embed must be their size (default: random vectors)")
    parser.add_argument("--pretrained-words", type=non_negative_int, default=100_000, metavar="N",
                        help="with --embeddings, the vocabulary also holds the file's first N words (its most "
                        "frequent), so words that training never saw keep their pretrained vectors; 0: only the "
                        "training words")
    parser.add_argument("--freeze-embeddings", action="store_true",
                        help="keep the word vectors as they start (pretrained, and random for the words the file "
                        "lacks and <unk>) while the rest trains (default: train them too)")


def check_embeddings_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse at once (before any data is loaded) ``--freeze-embeddings`` without
    ``--embeddings``, and an ``--embeddings`` file that is not there."""
    if args.freeze_embeddings and args.embeddings is None:
        parser.error("--freeze-embeddings keeps pretrained vectors: give them with --embeddings PATH")
    if args.embeddings is not None and not args.embeddings.is_file():
        parser.error(f"--embeddings: no file at {args.embeddings}; download {SOURCES}")


def with_pretrained_words(args: argparse.Namespace, vocabulary: Vocabulary,
                          form: Callable[[str], str] | None = None) -> Vocabulary:
    """``vocabulary`` extended with the first ``--pretrained-words`` words of the ``--embeddings``
    file (unchanged without it), so that words training never saw keep their pretrained vectors.
    ``form``: the form the script looks words up by; only the file's words already in that form
    are added (the others could never be looked up)."""
    if args.embeddings is None or args.pretrained_words == 0:
        return vocabulary
    extended = extended_vocabulary(vocabulary, args.embeddings, args.pretrained_words, dim=args.embed, form=form)
    print(f"vocabulary: {len(vocabulary):,} words from training, {len(extended) - len(vocabulary):,} more from the "
          f"first {args.pretrained_words:,} of {args.embeddings}")
    return extended


def pretrained_embeddings(args: argparse.Namespace, vocabulary: Vocabulary) -> Initializer | None:
    """The initial table of the word embedding for ``vocabulary``, from ``--embeddings`` (None
    without it): each word's vector, else its lower-cased form's, else random (from ``--seed``,
    the same for every network of an ensemble); prints how many words were found."""
    if args.embeddings is None:
        return None
    began = time.perf_counter()
    table, coverage = pretrained_table(args.embeddings, vocabulary, key=jax.random.key(args.seed), dim=args.embed)
    print(f"{args.embeddings} ({table.shape[1]}-d, read in {time.perf_counter() - began:.1f} s): {coverage}")
    return pretrained(table)


def load_text(args: argparse.Namespace, name: str, split: str) -> dict:
    """A split of the TFDS text dataset ``name`` (:func:`jaxdl.data.load_text_dataset`) from
    the ``--data-dir``/``--manual-dir`` flags (a DataError if it cannot be had)."""
    return load_text_dataset(name, split, data_dir=args.data_dir, manual_dir=args.manual_dir)
