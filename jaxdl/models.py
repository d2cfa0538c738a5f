"""The lecture's models, composed from :mod:`jaxdl.layers`.

Section 1: the threshold unit (perceptron) with its classic learning rule, the
logistic unit, and the multilayer perceptron. Section 2: the convolutional network.
Section 3: a recurrent classifier of token sequences, a tagger that labels every
token, and a character-level language model.
"""

from __future__ import annotations

import inspect
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.augment import RandomAffine
from jaxdl.core import Layer, parallel, serial
from jaxdl.crf import CRF, Constraints
from jaxdl.layers import (
    BatchNorm,
    CharCNN,
    Conv,
    Dense,
    Dropout,
    Embedding,
    FanInConcat,
    FanOut,
    Flatten,
    Initializer,
    MaxPool,
    RandomShift,
    ReLU,
    Sigmoid,
    Step,
    Take,
    WordDropout,
)
from jaxdl.recurrent import RNN, AttentionPool, GRUCell, LSTMCell, SimpleCell

CELLS = {"lstm": LSTMCell, "gru": GRUCell, "simple": SimpleCell}


# ----------------------------------------------------------------------- perceptron
def perceptron() -> Layer:
    """A single threshold unit: ``y = 1 if sum_i x_i w_i > threshold else 0``.

    Params: ``{"unit": {"w": (inputs, 1), "b": (1,)}}``; the threshold is ``-b``.
    """
    return serial(Dense(1, name="unit"), Step(), name="perceptron")


def perceptron_threshold(params) -> jax.Array:
    """The unit's threshold (a scalar): the unit fires when ``x . w > threshold``."""
    return -params["unit"]["b"][0] + 0.0  # + 0.0 turns -0.0 into 0.0


def perceptron_learning_rule(
    params, inputs: jax.Array, targets: jax.Array, *, epochs: int, lr: float = 1.0
) -> tuple[dict, jax.Array]:
    """Rosenblatt's rule, one example at a time: ``w += lr (t - y) x``; ``threshold -= lr (t - y)``.

    Args:
      params: the perceptron's params.
      inputs: (N, inputs) examples; targets: (N,) of 0/1.
      epochs: passes over the examples, in order.
    Returns:
      The learned params, and the number of wrong outputs in each epoch, (epochs,).
    """
    model = perceptron()
    inputs = jnp.asarray(inputs, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)

    def learn_one(params, example):
        x, t = example
        error = t - model.apply(params, x[None])[0, 0]
        unit = params["unit"]
        unit = {"w": unit["w"] + lr * error * x[:, None], "b": unit["b"] + lr * error}
        return {**params, "unit": unit}, error != 0

    def epoch(params, _):
        params, wrong = lax.scan(learn_one, params, (inputs, targets))
        return params, wrong.sum()

    return lax.scan(epoch, params, None, length=epochs)


def logistic_unit() -> Layer:
    """The perceptron with a smooth threshold: features (N, F) -> one logit (N, 1);
    ``sigmoid(logit)`` is the probability of class 1 (train it with
    :func:`jaxdl.losses.binary_cross_entropy`: logistic regression).

    Params: ``{"unit": {"w": (F, 1), "b": (1,)}}``, as the perceptron's.
    """
    return serial(Dense(1, name="unit"), name="logistic_unit")


# ------------------------------------------------------------------------------ MLP
def mlp(
    hidden: Sequence[int],
    outputs: int,
    *,
    activation: Callable[..., Layer] = Sigmoid,
) -> Layer:
    """A multilayer perceptron: (Dense -> activation) for each hidden size, then a Dense output.

    Params: ``{"hidden1": ..., "hidden2": ..., "output": ...}`` (``"hidden"`` for one
    hidden layer). The output is linear (logits): pair it with a loss from logits.
    """
    layers = []
    for size in hidden:
        layers += [Dense(size, name="hidden"), activation()]
    return serial(*layers, Dense(outputs, name="output"), name="mlp")


# ------------------------------------------------------------------------------ CNN
def cnn(
    num_classes: int = 10,
    *,
    features: Sequence[int | Sequence[int]] = (32, 64),
    hidden: int = 128,
    dropout: float = 0.5,
    batch_norm: bool = False,
    shift: float = 0,
    rotation: float = 0.0,
    zoom: float = 0.0,
) -> Layer:
    """The lecture's CNN: a block of (Conv 3x3 -> ReLU) then MaxPool 2 per entry of
    ``features`` (an int: one convolution of that width; a sequence: one convolution per
    width), then a fully connected "voting" layer and a Dense output over the classes.

    ``batch_norm`` puts a BatchNorm between each convolution (then without bias) or the
    voting layer and its ReLU: the model keeps state, running statistics of momentum 0.9
    (PyTorch's default), which catch up within a few dozen steps, so that evaluations early
    in training score the network as trained (0.99 takes hundreds). Training
    images are first moved by up to ``shift`` pixels (whole pixels: ``RandomShift``), or
    with ``rotation`` (degrees) or ``zoom`` also rotated and scaled (``RandomAffine``).

    Images (N, H, W, C) -> logits (N, num_classes); ``softmax`` of them is the
    probability distribution over the classes. Params: ``conv1``, ``conv2``, ...,
    ``hidden``, ``output`` (and ``batchnorm1``, ... with ``batch_norm``).
    """
    if rotation or zoom:
        layers = [RandomAffine(rotation, zoom, shift)]
    elif shift:
        if int(shift) != shift:
            raise ValueError(f"cnn shift without rotation or zoom moves whole pixels: got {shift!r}")
        layers = [RandomShift(int(shift))]
    else:
        layers = []

    def activated(layer: Layer) -> list[Layer]:
        return [layer, BatchNorm(momentum=0.9), ReLU()] if batch_norm else [layer, ReLU()]

    for block in features:
        for width in (block,) if isinstance(block, int) else block:
            layers += activated(Conv(width, 3, bias=not batch_norm))
        layers.append(MaxPool(2))
    return serial(
        *layers, Flatten(), *activated(Dense(hidden, bias=not batch_norm, name="hidden")), Dropout(dropout),
        Dense(num_classes, name="output"), name="cnn",
    )


# ------------------------------------------------------------------------------ RNN
def _cell(cell: str):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
    return CELLS[cell]


def rnn_classifier(
    vocab_size: int,
    num_classes: int,
    *,
    embed: int = 128,
    hidden: int = 128,
    cell: str = "lstm",
    layers: int = 2,
    bidirectional: bool = True,
    pool: str = "mean",
    dropout: float = 0.3,
    embed_dropout: float = 0.0,
    word_dropout: float = 0.0,
    embed_init: Initializer | None = None,
    padding_id: int = 0,
    unk_id: int = 1,
) -> Layer:
    """Token ids (N, T) -> logits (N, num_classes): WordDropout -> Embedding -> Dropout
    (``embed_dropout``) -> RNN (``layers`` deep, ``cell`` in ``CELLS``, pooled over valid
    steps by ``pool``: "last", "mean", "max", or "attention": weights learned by a small
    MLP, :func:`jaxdl.recurrent.AttentionPool`) -> Dropout -> Dense; ``dropout`` is also the
    rate between recurrent layers, and while training each word becomes ``unk_id`` with
    probability ``word_dropout``. ``embed_init`` gives the embedding's initial table
    (pretrained word vectors: :func:`jaxdl.data.vectors.pretrained`); random by default.

    Sequences are padded at the end with ``padding_id``; give their ``lengths`` (context,
    as :class:`jaxdl.data.text.Buckets` batches hold them; a call without them is an
    error), so padding reaches neither the outputs nor the gradients.
    Params: ``embedding``, ``rnn`` (``layer1``, ...), ``attention`` (with that pool), ``output``.
    """
    return serial(
        WordDropout(word_dropout, unk_id=unk_id, padding_id=padding_id),
        _embedding(vocab_size, embed, embed_init, padding_id),
        Dropout(embed_dropout, name="embed_dropout"),
        RNN(_cell(cell)(hidden), layers=layers, bidirectional=bidirectional, dropout=dropout,
            output="sequence" if pool == "attention" else pool, needs_lengths=True, name="rnn"),
        *([AttentionPool(hidden, name="attention")] if pool == "attention" else []),
        Dropout(dropout),
        Dense(num_classes, name="output"),
        name="rnn_classifier",
    )


def tagger(
    num_words: int,
    num_chars: int,
    num_tags: int,
    *,
    embed: int = 100,
    char_embed: int = 30,
    char_features: int = 50,
    char_width: int = 3,
    hidden: int = 128,
    cell: str = "lstm",
    layers: int = 2,
    dropout: float = 0.5,
    word_dropout: float = 0.0,
    crf: bool = False,
    allowed: Constraints | None = None,
    embed_init: Initializer | None = None,
    padding_id: int = 0,
    unk_id: int = 1,
) -> Layer:
    """Token rows (N, T, 1 + C) -> logits of each token's tag (N, T, num_tags), or with
    ``crf`` the :class:`jaxdl.crf.ChainScores` of a CRF over the tag sequences.

    A row holds a word id, then the ids of the word's C first characters
    (:func:`jaxdl.data.tagging.encode_tokens`). Each word becomes its embedding
    (``embed``) beside learned character features (:func:`jaxdl.layers.CharCNN`,
    ``char_features``), which know words never seen in training by their spelling;
    then Dropout -> RNN (bidirectional, ``layers`` deep, ``cell`` in ``CELLS``, every
    step's state) -> Dropout -> Dense per token. While training each word id becomes
    ``unk_id`` with probability ``word_dropout`` (the characters stay), so the
    network learns to tag unknown words. ``crf`` adds a linear-chain CRF
    (:func:`jaxdl.crf.CRF`, its moves limited to ``allowed``: :func:`jaxdl.crf.bio_constraints`),
    which scores whole tag sequences; train it with :func:`jaxdl.crf.negative_log_likelihood`.
    ``embed_init`` gives the word embedding's initial table (pretrained vectors:
    :func:`jaxdl.data.vectors.pretrained`); random by default.

    Sentences are padded at the end with ``padding_id`` word ids; give their ``lengths``
    (context; a call without them is an error), so padding reaches neither the outputs
    nor the gradients.
    Params: ``features`` (``words``: ``embedding``; ``spelling``: ``charcnn``), ``rnn``
    (``layer1``, ...), ``output``, and ``crf`` with ``crf``.
    """
    if allowed is not None and not crf:
        raise ValueError("tagger: allowed= limits the moves of a CRF; pass crf=True too")
    rnn = RNN(_cell(cell)(hidden), layers=layers, bidirectional=True, dropout=dropout, output="sequence",
              needs_lengths=True, name="rnn")
    return serial(
        FanOut(2),
        parallel(
            serial(Take(0), WordDropout(word_dropout, unk_id=unk_id, padding_id=padding_id),
                   _embedding(num_words, embed, embed_init, padding_id), name="words"),
            serial(Take(slice(1, None)),
                   CharCNN(num_chars, char_features, embed=char_embed, width=char_width, padding_id=padding_id),
                   name="spelling"),
            name="features",
        ),
        FanInConcat(),
        Dropout(dropout),
        rnn,
        Dropout(dropout),
        Dense(num_tags, name="output"),
        *([CRF(num_tags, allowed=allowed)] if crf else []),
        name="tagger",
    )


def _embedding(vocab_size: int, features: int, init: Initializer | None, padding_id: int) -> Layer:
    """An Embedding initialised by ``init`` (pretrained vectors), else by its own default."""
    return Embedding(vocab_size, features, padding_id=padding_id, **({} if init is None else {"init_fn": init}))


def char_language_model(
    vocab_size: int,
    *,
    embed: int = 64,
    hidden: int = 256,
    cell: str = "gru",
    layers: int = 1,
    dropout: float = 0.0,
    stream: bool = False,
) -> Layer:
    """Character ids (N, T) -> logits (N, T, vocab_size) of the next character at each step:
    Embedding -> RNN (``layers`` deep, ``cell`` in ``CELLS``, every step's state) ->
    Dropout -> Dense per step; ``dropout`` is also the rate between recurrent layers.

    The network reads forward only, so the logits at step t depend on ids[:, :t + 1]
    alone (padding at the end of a row changes nothing before it). With ``stream=True``
    it keeps the recurrent state between calls (:func:`jaxdl.recurrent.RNN`): the same
    params read a text in pieces, or one character at a time to generate one.
    Params: ``embedding``, ``rnn`` (``layer1``, ...), ``output``.
    """
    return serial(
        Embedding(vocab_size, embed),
        RNN(_cell(cell)(hidden), layers=layers, dropout=dropout, output="sequence", stream=stream, name="rnn"),
        Dropout(dropout),
        Dense(vocab_size, name="output"),
        name="char_language_model",
    )


def from_settings(build: Callable[..., Layer], settings: Mapping, *args, **kwargs) -> Layer:
    """``build(*args, **kwargs)`` with the keyword-only arguments of ``build`` that a run's
    ``settings`` (its flags by name, as its checkpoints keep them) hold, unless ``kwargs``
    gives them: the model the run trained, rebuilt. E.g.
    ``from_settings(rnn_classifier, settings, len(vocabulary), 2)``, or
    ``from_settings(char_language_model, settings, len(vocabulary), stream=True)``."""
    names = {name for name, parameter in inspect.signature(build).parameters.items()
             if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in kwargs}
    return build(*args, **{name: value for name, value in settings.items() if name in names}, **kwargs)
