"""Data: TFDS datasets as numpy arrays (online, or offline from a folder of original files),
and in-memory datasets and their batches."""

from jaxdl.data.batching import dataset_size, epoch_order, eval_batches, shuffled_batches
from jaxdl.data.tfds import (
    DataError,
    ImageClassification,
    load_arrays,
    load_image_classification,
    resolve_manual_dir,
)

__all__ = [
    "DataError",
    "ImageClassification",
    "dataset_size",
    "epoch_order",
    "eval_batches",
    "load_arrays",
    "load_image_classification",
    "resolve_manual_dir",
    "shuffled_batches",
]
