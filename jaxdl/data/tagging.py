"""Sequence tagging on the host: CoNLL-2003's sentences, last names from NER tags, the
lecture's hand-made token features, and token rows (a word id and its characters' ids) in
length buckets for a learned tagger.

The lecture's question, for each word: is it a person's last name? The gold standard
comes from CoNLL-2003's named-entity tags (:func:`last_name_labels`); a person designs
features that should answer it (:func:`token_features`), or a network learns its own
from the words and their characters (:func:`encode_tokens`, :func:`jaxdl.models.tagger`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from jaxdl.data.text import PAD_ID, Buckets, Vocabulary, bucket_examples, tokenize_words
from jaxdl.data.text_datasets import load_text_dataset
from jaxdl.metrics import bio_spans

TITLES = frozenset({
    "mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame", "lord", "lady", "rev", "president", "minister",
    "premier", "chancellor", "senator", "sen", "governor", "gov", "judge", "gen", "general", "king", "queen",
    "prince", "princess", "pope", "coach", "captain", "capt", "secretary", "mayor", "ambassador",
})
"""Words (lower case, no final period) that stand before a name: "Mr.", "President", "Gen"..."""

FEATURES = (
    "previous word is a title",
    "capitalised",
    "previous word capitalised",
    "next word capitalised",
    "all capitals",
    "first word of the sentence",
    "is a title",
)
"""What :func:`token_features` measures of each word, in column order."""


def last_name_labels(ner_tags: Sequence[str]) -> list[int]:
    """1 for each person's last name in a sentence's BIO tags, else 0.

    The rule: the last token of every PER span is a last name ("Peter Blackburn" gives
    Blackburn). Its limits: a one-word mention counts whole, which is right for
    "Clinton said" but wrong for a first name or nickname alone ("Diana", "Ronaldo");
    names written family name first ("Li Peng") give the given name; a suffix inside
    the span ("Jr.") is taken for the name. Titles are outside CoNLL's PER spans, so
    "Mr. Doe" gives Doe.
    """
    labels = [0] * len(ner_tags)
    for kind, _, end in bio_spans(ner_tags):
        if kind == "PER":
            labels[end - 1] = 1
    return labels


def _is_title(token: str) -> bool:
    return token.lower().removesuffix(".") in TITLES


def _capitalised(token: str) -> bool:
    return token[:1].isupper()


_ABBREVIATION = re.compile(r"[A-Za-z](?:\.[A-Za-z])*")  # an initial (J) or letters with inner periods (U.S)
_SHORT_FORMS = frozenset({"jr", "sr", "inc", "corp", "co", "ltd", "st"})  # Jr. Inc. Co. ... keep their period


def tokenize_news(text: str) -> list[str]:
    """The tokens of raw text as CoNLL-2003 splits news: :func:`jaxdl.data.text.tokenize_words`
    (case kept) with these changes. An initial, an abbreviation or a capitalised short
    form keeps its period ("J.", "U.S.", "Jr.", "Inc."), and so does a capitalised title
    before a capitalised word ("Mr. Doe", but "the Queen ." at a sentence's end). A
    possessive is split off ("Smith 's"), and typographic apostrophes become "'".
    """
    words = tokenize_words(text.replace("’", "'"))
    tokens: list[str] = []
    for i, token in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        previous = tokens[-1] if tokens else ""
        keeps_period = _ABBREVIATION.fullmatch(previous) or _capitalised(previous) and (
            previous.lower() in _SHORT_FORMS or _is_title(previous) and _capitalised(following)
        )
        if token == "." and keeps_period:
            tokens[-1] += "."
        elif len(token) > 2 and token.endswith("'s"):
            tokens += [token[:-2], "'s"]
        else:
            tokens.append(token)
    return tokens


def token_features(tokens: Sequence[str]) -> np.ndarray:
    """The :data:`FEATURES` of each token of a sentence: float32 (T, len(FEATURES)) of 0/1."""
    if isinstance(tokens, str):
        raise TypeError(f"token_features takes a list of tokens, got the str {tokens[:40]!r}: tokenise it first")
    rows = []
    for i, token in enumerate(tokens):
        previous = tokens[i - 1] if i > 0 else ""
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        letters = [c for c in token if c.isalpha()]
        rows.append((
            _is_title(previous),
            _capitalised(token),
            _capitalised(previous),
            _capitalised(following),
            len(letters) > 1 and all(c.isupper() for c in letters),
            i == 0,
            _is_title(token),
        ))
    return np.array(rows, dtype=np.float32).reshape(len(tokens), len(FEATURES))


def word_form(token: str) -> str:
    """The form a word is looked up by: lower case, every digit 0 ("1996-08-22" -> "0000-00-00").
    Capitals are left to the characters."""
    return "".join("0" if c.isdigit() else c for c in token.lower())


def encode_tokens(tokens: Sequence[str], words: Vocabulary, chars: Vocabulary, max_chars: int) -> np.ndarray:
    """Token rows int32 (T, 1 + max_chars): the id of each token's :func:`word_form` in
    ``words``, then the ids of its first ``max_chars`` characters in ``chars``, padded with
    ``PAD_ID``. Unknown words and characters get ``UNK_ID``."""
    if isinstance(tokens, str):
        raise TypeError(f"encode_tokens takes a list of tokens, got the str {tokens[:40]!r}: tokenise it first")
    rows = np.full((len(tokens), 1 + max_chars), PAD_ID, dtype=np.int32)
    for i, token in enumerate(tokens):
        if not token:
            raise ValueError(f"token {i} is empty: every token needs at least one character")
        rows[i, 0] = words.id_of(word_form(token))
        spelled = chars.encode(list(token[:max_chars]))
        rows[i, 1 : 1 + len(spelled)] = spelled
    return rows


def marked_text(tokens: Sequence[str], tags: Sequence[str]) -> str:
    """The tokens with each entity in brackets and its type, every PER span's last word
    (its :func:`last_name_labels`) between stars: ``Mr. [John *Doe*]PER met ...``."""
    if len(tokens) != len(tags):
        raise ValueError(f"marked_text: {len(tokens)} tokens but {len(tags)} tags")
    words = list(tokens)
    for i, last in enumerate(last_name_labels(tags)):
        if last:
            words[i] = f"*{words[i]}*"
    for kind, start, end in bio_spans(tags):
        words[start] = "[" + words[start]
        words[end - 1] = f"{words[end - 1]}]{kind}"
    return " ".join(words)


# ------------------------------------------------------------------------ CoNLL-2003
def load_conll2003(split: str, *, data_dir=None, manual_dir=None) -> dict[str, list[list]]:
    """The sentences of a CoNLL-2003 ``split`` ("train", "dev", "test", or a slice such as
    "train[:2000]"): ``"tokens"`` and ``"ner"`` tags, a list of str per sentence, and the
    gold ``"last_names"`` (0/1 per token, :func:`last_name_labels`). Loaded with
    :func:`jaxdl.data.load_text_dataset` (a DataError if it cannot be had)."""
    data = load_text_dataset("conll2003", split, data_dir=data_dir, manual_dir=manual_dir)
    ner = [list(tags) for tags in data["ner"]]
    return {"tokens": [list(tokens) for tokens in data["tokens"]], "ner": ner,
            "last_names": [last_name_labels(tags) for tags in ner]}


def split_summary(name: str, split: dict) -> str:
    """One line of a split's counts (a :func:`load_conll2003` dict): sentences, tokens, last names."""
    tokens = sum(len(t) for t in split["tokens"])
    last_names = sum(map(sum, split["last_names"]))
    return f"{name}: {len(split['tokens']):,} sentences, {tokens:,} tokens, {last_names:,} last names"


def word_vocabulary(sentences: Sequence[Sequence[str]], *, min_count: int = 1) -> Vocabulary:
    """The :func:`word_form` of the tokens of ``sentences`` seen at least ``min_count`` times
    (the rest become ``<unk>`` word ids; their characters stay)."""
    return Vocabulary.build(([word_form(t) for t in tokens] for tokens in sentences), min_count=min_count)


def char_vocabulary(sentences: Sequence[Sequence[str]]) -> Vocabulary:
    """Every character of the tokens of ``sentences``, capitals kept."""
    return Vocabulary.build(list(token) for tokens in sentences for token in tokens)


def token_rows(sentences: Sequence[Sequence[str]], words: Vocabulary, chars: Vocabulary,
               max_chars: int) -> list[np.ndarray]:
    """The token rows int32 (T, 1 + max_chars) of each sentence (:func:`encode_tokens`)."""
    return [encode_tokens(tokens, words, chars, max_chars) for tokens in sentences]


def tagger_data(rows: Sequence[np.ndarray], ner: Sequence[Sequence[str]], tags: Sequence[str],
                boundaries: Sequence[int]) -> Buckets:
    """Sentences in length buckets for training or scoring a tagger: ``"x"`` the token rows
    (N_b, T_b, 1 + C) of each bucket, ``"y"`` the id of each token's tag in ``tags`` (N_b, T_b),
    a ``"mask"`` of the real tokens. ``ner`` holds each sentence's tags, one per row of ``rows``."""
    ids = {tag: i for i, tag in enumerate(tags)}
    unknown = sorted({tag for sentence in ner for tag in sentence} - set(ids))
    if unknown:
        raise ValueError(f"tagger_data: tags {unknown} are not among the tags {list(tags)}")
    return bucket_examples(rows, boundaries, token_columns={"y": [[ids[t] for t in sentence] for sentence in ner]})
