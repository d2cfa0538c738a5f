"""Data: in-memory datasets and their batches (TFDS loading arrives with the CNN work)."""

from jaxdl.data.batching import dataset_size, epoch_order, eval_batches, shuffled_batches

__all__ = ["dataset_size", "epoch_order", "eval_batches", "shuffled_batches"]
