"""The lecture's models, composed from :mod:`jaxdl.layers`.

Section 1: the threshold unit (perceptron) with its classic learning rule, and
the multilayer perceptron. Section 2: the convolutional network. Section 3: a
recurrent classifier of token sequences.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxdl.layers import (
    Conv,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    Layer,
    MaxPool,
    RandomShift,
    ReLU,
    Sigmoid,
    Step,
    _keys,
    serial,
)
from jaxdl.recurrent import RNN, GRUCell, LSTMCell, SimpleCell

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
    features: Sequence[int] = (32, 64),
    hidden: int = 128,
    dropout: float = 0.5,
    shift: int = 0,
) -> Layer:
    """The lecture's CNN: (Conv 3x3 -> ReLU -> MaxPool 2) per entry of ``features``,
    then a fully connected "voting" layer and a Dense output over the classes.
    With ``shift`` > 0, training images are first moved by up to that many pixels.

    Images (N, H, W, C) -> logits (N, num_classes); ``softmax`` of them is the
    probability distribution over the classes. Params: ``conv1``, ``conv2``, ...,
    ``hidden``, ``output``.
    """
    blocks = [RandomShift(shift)] if shift else []
    for width in features:
        blocks += [Conv(width, 3), ReLU(), MaxPool(2)]
    return serial(
        *blocks, Flatten(), Dense(hidden, name="hidden"), ReLU(), Dropout(dropout),
        Dense(num_classes, name="output"), name="cnn",
    )


# ------------------------------------------------------------------------------ RNN
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
    padding_id: int = 0,
) -> Layer:
    """Token ids (N, T) -> logits (N, num_classes): Embedding -> RNN (``layers`` deep,
    ``cell`` in ``CELLS``, pooled over valid steps by ``pool``: "last", "mean" or "max")
    -> Dropout -> Dense; ``dropout`` is also the rate between recurrent layers.

    Sequences are padded at the end with ``padding_id``; the valid lengths come from
    the ids, so padding reaches neither the outputs nor the gradients.
    Params: ``embedding``, ``rnn`` (``layer1``, ...), ``output``.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {tuple(CELLS)}, got {cell!r}")
    body = serial(
        Embedding(vocab_size, embed, padding_id=padding_id),
        RNN(CELLS[cell](hidden), layers=layers, bidirectional=bidirectional, dropout=dropout, output=pool, name="rnn"),
        Dropout(dropout),
        Dense(num_classes, name="output"),
        name="rnn_classifier",
    )
    parts = dict(body.children)

    def apply(params, ids, *, key=None, train=False):
        rnn_key, dropout_key = _keys(key, 2)
        x = parts["embedding"].apply(params["embedding"], ids)
        lengths = jnp.sum(ids != padding_id, axis=1)
        x = parts["rnn"].apply(params["rnn"], x, lengths=lengths, key=rnn_key, train=train)
        x = parts["dropout"].apply({}, x, key=dropout_key, train=train)
        return parts["output"].apply(params["output"], x)

    return body._replace(apply=apply)
