"""The lecture's last names, two ways: the logistic unit on hand-made features (its training
inputs, its training and its threshold, the last names it finds) and a learned tagger (built
from a run's settings and vocabularies, its optimizer, its tags for every token of sentences or
of raw text), and the tables that score them side by side.

The tagger is :func:`jaxdl.models.tagger` (or an ensemble of it: networks of the same
settings trained from other seeds); its inputs are token rows made with the run's word and
character vocabularies (:func:`jaxdl.data.tagging.encode_tokens`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import jax
import numpy as np
import optax

from jaxdl.core import Layer
from jaxdl.crf import ChainScores, bio_constraints, negative_log_likelihood, viterbi
from jaxdl.data.tagging import FEATURES, token_features, token_rows, tokenize_news
from jaxdl.data.text import Buckets, Vocabulary, bucket_examples, covering_lengths
from jaxdl.layers import Initializer
from jaxdl.losses import binary_cross_entropy, softmax_cross_entropy
from jaxdl.loop import FitResult, fit
from jaxdl.metrics import Scores, best_f1_threshold
from jaxdl.models import logistic_unit, tagger
from jaxdl.tables import format_table
from jaxdl.train import TrainState, ensemble_predict, make_train_step, predict

TAGGER_SETTINGS = ("embed", "char_embed", "char_features", "char_width", "hidden", "cell", "layers", "dropout",
                   "word_dropout")
"""The settings of a run that :func:`build_tagger` passes to :func:`jaxdl.models.tagger`."""

FEATURE_UNIT = {"epochs": 3, "batch_size": 256, "lr": 0.05}
"""How :func:`fit_feature_unit` trains the logistic unit: it converges in a few epochs."""


def build_tagger(settings: Mapping, vocabularies: Mapping[str, Vocabulary], *,
                 embed_init: Initializer | None = None) -> Layer:
    """The tagger of a run: :func:`jaxdl.models.tagger` for the ``"words"`` and ``"chars"``
    of ``vocabularies``, the ``settings["tags"]`` it chooses from, and the
    :data:`TAGGER_SETTINGS` of ``settings`` (a script's flags, or a checkpoint's config:
    the ``build`` of :func:`jaxdl.runs.load_run`). With ``settings["crf"]`` (absent: off) it
    ends in a CRF whose moves follow the IOB2 rules of the tags; ``embed_init`` gives the
    word embedding's initial table (pretrained vectors)."""
    missing = [name for name in ("tags", *TAGGER_SETTINGS) if name not in settings]
    if missing:
        raise KeyError(f"build_tagger: the settings lack {missing}")
    crf = bool(settings.get("crf", False))
    return tagger(len(vocabularies["words"]), len(vocabularies["chars"]), len(settings["tags"]),
                  crf=crf, allowed=bio_constraints(settings["tags"]) if crf else None, embed_init=embed_init,
                  **{name: settings[name] for name in TAGGER_SETTINGS})


def tagger_loss(settings: Mapping) -> Callable:
    """The loss a run's tagger trains on: the CRF's negative log-likelihood of the gold tag
    sequences with ``settings["crf"]``, else each token's softmax cross-entropy (both per token)."""
    return negative_log_likelihood if settings.get("crf", False) else softmax_cross_entropy


def tagger_optimizer(lr: float, steps: int) -> optax.GradientTransformation:
    """The tagger's optimizer: gradients clipped to global norm 5, then Adam with a cosine
    decay from ``lr`` to 0 over ``steps`` steps (all of the training)."""
    return optax.chain(optax.clip_by_global_norm(5.0), optax.adam(optax.cosine_decay_schedule(lr, steps)))


def predicted_tags(model: Layer, members: Sequence, data: Buckets, tags: Sequence[str], *,
                   batch_size: int = 256) -> list[list[str]]:
    """The tag of each token of each sentence of ``data`` (token rows in length buckets),
    sentences in input order: the most probable by the networks' probabilities averaged,
    or for a tagger that ends in a CRF, its best tag sequence (Viterbi), the networks voting
    token by token."""
    votes = ensemble_predict(model, members, data, batch_size, per_step=True, transform=_tag_probabilities)
    return [[tags[i] for i in p.argmax(-1)] for p in votes]


def _tag_probabilities(outputs) -> jax.Array:
    """(B, T, K): each tag's softmax probability, or 1 for the tags of a CRF's Viterbi path."""
    if isinstance(outputs, ChainScores):
        return jax.nn.one_hot(viterbi(outputs)[0], outputs.emissions.shape[-1])
    return jax.nn.softmax(outputs)


def tag_texts(model: Layer, members: Sequence, texts: Sequence[str], words: Vocabulary, chars: Vocabulary,
              tags: Sequence[str], *, max_chars: int, boundaries: Sequence[int] = (8, 16, 32, 48)
              ) -> list[tuple[list[str], list[str]]]:
    """Each text split into tokens as CoNLL-2003 splits them (:func:`jaxdl.data.tagging.tokenize_news`)
    and the tag of each token, by the tagger's networks (``members``) averaged.

    ``max_chars`` is the characters each token row holds, as in training; sentences are
    padded to the ``boundaries`` (and one bucket for the longest).
    """
    sentences = [tokenize_news(text) for text in texts]
    empty = [i for i, tokens in enumerate(sentences) if not tokens]
    if empty:
        raise ValueError(f"text {empty[0]} ({texts[empty[0]]!r}) holds no token to tag")
    data = bucket_examples(token_rows(sentences, words, chars, max_chars),
                           covering_lengths(boundaries, max(map(len, sentences))))
    return list(zip(sentences, predicted_tags(model, members, data, tags)))


def sentence_features(sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """The hand-made features of every token of ``sentences``, one after the other: (tokens, F)."""
    return np.concatenate([token_features(tokens) for tokens in sentences])


def feature_last_names(params, threshold: float, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
    """1 for each token that the logistic unit on the hand-made features (``params``, of
    :func:`jaxdl.models.logistic_unit`) calls a last name: its logit passes ``threshold``."""
    logits = predict(logistic_unit(), params, sentence_features(sentences), 4096)[:, 0]
    ends = np.cumsum([len(tokens) for tokens in sentences])[:-1]
    return [list((part > threshold).astype(int)) for part in np.split(logits, ends)]


def feature_arrays(sentences: Sequence[Sequence[str]], last_names: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """The logistic unit's training inputs: every token of ``sentences`` as a row of
    :data:`jaxdl.data.tagging.FEATURES`, ``"x"`` float32 (N, F), and whether it is a last
    name (``last_names``, 0/1 per token), ``"y"`` int32 (N,)."""
    x = sentence_features(sentences)
    y = np.concatenate([np.asarray(labels, np.int32) for labels in last_names])
    if len(y) != len(x):
        raise ValueError(f"feature_arrays: {len(x)} tokens but {len(y)} last-name labels")
    return {"x": x, "y": y}


def fit_feature_unit(data: Mapping[str, np.ndarray], *, seed: int, config: Mapping | None = None,
                     **fit_kwargs) -> tuple[FitResult, float]:
    """The logistic unit trained on ``data`` (:func:`feature_arrays`) as :data:`FEATURE_UNIT`
    says (Adam, binary cross-entropy, parameters and data order from ``seed``), and the
    threshold on its logit that gives the best F1 on those tokens (rather than P = 0.5:
    last names are only 3% of them).

    ``fit_kwargs`` go to :func:`jaxdl.loop.fit` (``checkpoint_dir``, ``resume``, ``progress``,
    ``mesh``...); ``config``, saved with its checkpoints, gets the features and
    :data:`FEATURE_UNIT` added.
    """
    model = logistic_unit()
    init_key, state_key = jax.random.split(jax.random.key(seed))
    _, params = model.init(init_key, (-1, len(FEATURES)))
    optimizer = optax.adam(FEATURE_UNIT["lr"])
    result = fit(
        TrainState.create(params, optimizer, state_key), make_train_step(model, binary_cross_entropy, optimizer),
        dict(data), epochs=FEATURE_UNIT["epochs"], batch_size=FEATURE_UNIT["batch_size"], steps_per_call=100,
        config={"features": list(FEATURES), **FEATURE_UNIT, "seed": seed, **(config or {})}, **fit_kwargs,
    )
    logits = predict(model, result.state.params, data["x"], 4096)[:, 0]
    return result, best_f1_threshold(logits, data["y"])


def last_name_table(features: Mapping[str, Scores], network: Mapping[str, Scores]) -> str:
    """Last-name precision, recall and F1 per split (the keys of ``features``), the hand-made
    features' and the network's side by side."""
    rows = [(split, measure, f"{getattr(features[split], measure):.2%}", f"{getattr(network[split], measure):.2%}")
            for split in features for measure in ("precision", "recall", "f1")]
    return format_table(
        ("last names", "", "hand-made features + logistic unit", "learned features (BiLSTM tagger)"), rows, right=(2, 3)
    )


def entity_table(entities: Mapping[str, Mapping[str, Scores]]) -> str:
    """The tagger's entity F1 per type on ``entities["dev"]``, and precision, recall and F1 on
    ``entities["test"]`` (each :func:`jaxdl.metrics.span_scores`); "overall" last."""
    kinds = sorted(set(entities["test"]) - {"overall"}) + ["overall"]
    dev, test = entities["dev"], entities["test"]
    return format_table(
        ("entity", "dev F1", "test precision", "test recall", "test F1"),
        [(kind, f"{dev[kind].f1:.2%}", f"{test[kind].precision:.2%}", f"{test[kind].recall:.2%}",
          f"{test[kind].f1:.2%}") for kind in kinds],
        right=range(1, 5),
    )
