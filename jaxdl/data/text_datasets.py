"""Text datasets through the real TFDS builders, decoded to Python strings.

Prepared like every dataset in :mod:`jaxdl.data.tfds` (online, or offline from
``<manual_dir>/<builder name>/``). The ones jaxdl trains on:

- ``glue/sst2`` (``glue/SST-2/{train,dev,test}.tsv``): splits train, validation, test;
  ``{"sentence": str, "label": int (-1 in test), "idx": row number}``.
- ``conll2003`` (``conll2003/{train,valid,test}.txt``): splits train, dev, test;
  ``{"tokens", "pos", "chunks", "ner"}``, each a ``list[str]`` per sentence.
- ``tiny_shakespeare`` (``tiny_shakespeare/input.txt``): splits train, validation, test,
  one text each; :func:`load_text_corpus` gives it as a ``str``.
"""

from __future__ import annotations

import numpy as np

from jaxdl.data.tfds import (
    DataError,
    _builder,
    _ensure_prepared,
    _object_array,
    _split_arrays,
    _tfds,
    resolve_manual_dir,
)


def load_text_dataset(name: str, split: str, *, data_dir=None, manual_dir=None) -> dict[str, np.ndarray]:
    """The whole ``split`` of a TFDS text dataset, one array per feature with one entry per example.

    Text is ``str``; a token sequence is a ``list[str]``; class labels within a sequence
    (tags) are their names (``"B-PER"``); single class labels and numbers stay numpy integers
    (GLUE's unlabelled test split has label -1; :func:`label_names` gives the names).
    Examples whose sequences are all empty are dropped (TFDS's conll2003 has one per split).
    Prepared first if needed, as :func:`jaxdl.data.load_arrays` says.
    """
    tfds = _tfds()
    builder = _builder(name, data_dir)
    features = builder.info.features
    if not any(_is_text(feature) for feature in features.values()):
        raise DataError(
            f"{name} is not a text dataset: none of its features {sorted(features.keys())} is text. "
            f"Use load_arrays({name!r}, split) for its raw features."
        )
    _ensure_prepared(builder, resolve_manual_dir(manual_dir))
    arrays = _split_arrays(builder, split)
    sequences = [key for key, feature in features.items() if isinstance(feature, tfds.features.Sequence)]
    if sequences:
        keep = np.array([any(len(arrays[key][i]) for key in sequences) for i in range(len(arrays[sequences[0]]))])
        arrays = {key: column[keep] for key, column in arrays.items()}
    return {key: _decoded(features[key], column) for key, column in arrays.items()}


def load_text_corpus(name: str = "tiny_shakespeare", split: str = "train", *, data_dir=None, manual_dir=None) -> str:
    """The text of ``split`` as one ``str``, for a dataset whose only feature is text.

    tiny_shakespeare holds one text per split (90/5/5% of the file), so
    ``"train+validation+test"`` gives the whole file back; several texts are concatenated.
    """
    features = _builder(name, data_dir).info.features
    if list(features.keys()) != ["text"] or not isinstance(features["text"], _tfds().features.Text):
        raise DataError(
            f"{name} is not a corpus: expected a single text feature 'text', it has {sorted(features.keys())}. "
            f"Use load_text_dataset({name!r}, split)."
        )
    return "".join(load_text_dataset(name, split, data_dir=data_dir, manual_dir=manual_dir)["text"])


def label_names(name: str, *, data_dir=None) -> dict[str, list[str]]:
    """The class names of each class-label feature of ``name``, in label order, tags of
    sequences included; read from TFDS's description of the dataset, nothing is prepared."""
    tfds = _tfds()
    names = {}
    for key, feature in _builder(name, data_dir).info.features.items():
        inner = feature.feature if isinstance(feature, tfds.features.Sequence) else feature
        if isinstance(inner, tfds.features.ClassLabel):
            names[key] = list(inner.names)
    return names


def _is_text(feature) -> bool:
    tfds = _tfds()
    inner = feature.feature if isinstance(feature, tfds.features.Sequence) else feature
    return isinstance(inner, tfds.features.Text)


def _decoded(feature, column: np.ndarray) -> np.ndarray:
    """``column`` of ``feature`` as :func:`load_text_dataset` returns it."""
    tfds = _tfds()
    if isinstance(feature, tfds.features.Text):
        return _object_array([text.decode() for text in column])
    inner = feature.feature if isinstance(feature, tfds.features.Sequence) else None
    if isinstance(inner, tfds.features.Text):
        return _object_array([[token.decode() for token in row] for row in column])
    if isinstance(inner, tfds.features.ClassLabel):
        names = np.array(inner.names, dtype=object)
        return _object_array([names[row].tolist() for row in column])
    return column
