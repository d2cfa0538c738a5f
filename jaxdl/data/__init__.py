"""Data: TFDS datasets as numpy arrays (online, or offline from a folder of original files),
text datasets decoded to strings, in-memory datasets and their batches, and pretrained word vectors."""

from jaxdl.data.batching import (
    ArrayBatches,
    BatchSource,
    batch_source,
    dataset_size,
    epoch_order,
    eval_batches,
    shuffled_batches,
)
from jaxdl.data import tagging, text, vectors
from jaxdl.data.text_datasets import label_names, load_text_corpus, load_text_dataset
from jaxdl.data.tfds import (
    DataError,
    ImageClassification,
    load_arrays,
    load_image_classification,
    resolve_manual_dir,
)

__all__ = [
    "ArrayBatches",
    "BatchSource",
    "batch_source",
    "DataError",
    "ImageClassification",
    "dataset_size",
    "epoch_order",
    "eval_batches",
    "label_names",
    "load_arrays",
    "load_image_classification",
    "load_text_corpus",
    "load_text_dataset",
    "resolve_manual_dir",
    "shuffled_batches",
    "tagging",  # submodules: vocabularies, padding and length buckets; last names and token features
    "text",
    "vectors",  # pretrained word vectors (GloVe, word2vec, fastText) for an Embedding
]
