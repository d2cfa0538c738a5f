"""Batches of an in-memory dataset: a dict of arrays that share their first axis.

Training batches are drawn from a permutation that depends only on a key, so a
run resumed at any step sees exactly the batches it would have seen.

``fit`` and ``evaluate`` read any :class:`BatchSource`: :class:`ArrayBatches` wraps
a dict of arrays; :class:`jaxdl.data.text.Buckets` (sequences padded by length) is
another.
"""

from __future__ import annotations

from typing import Iterator, Mapping, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Dataset = Mapping[str, jax.Array]


def dataset_size(data: Dataset) -> int:
    """Number of examples; every array must have the same first axis."""
    sizes = {name: jnp.shape(array)[0] if jnp.ndim(array) else None for name, array in data.items()}
    if not sizes or len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"a dataset is a dict of arrays sharing their first (example) axis; got sizes {sizes}")
    return next(iter(sizes.values()))


@jax.jit
def _take(data: Dataset, indices: jax.Array) -> Dataset:
    return {name: array[indices] for name, array in data.items()}


def epoch_order(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The example ids of one shuffled epoch, (n // batch_size, batch_size); the remainder is dropped."""
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def shuffled_batches(
    data: Dataset, batch_size: int, key: jax.Array, *, start: int = 0
) -> Iterator[Dataset]:
    """One epoch of full batches in the order ``key`` shuffles to (:func:`epoch_order`).

    ``start`` skips the first batches (to resume inside an epoch).
    """
    order = epoch_order(key, dataset_size(data), batch_size)
    for i in range(start, order.shape[0]):
        yield _take(data, order[i])


def eval_batches(data: Dataset, batch_size: int) -> Iterator[Dataset]:
    """Every example once, in order, in batches of one shape.

    The last batch is padded by repeating example 0 and carries a ``mask`` that
    zeroes the padding (merged with the dataset's own ``mask``, if any).
    """
    n = dataset_size(data)
    for begin in range(0, n, batch_size):
        indices = jnp.arange(begin, begin + batch_size)
        valid = indices < n
        batch = _take(data, jnp.where(valid, indices, 0))
        mask = valid.astype(jnp.float32)
        if "mask" in batch:
            own = batch["mask"]
            mask = own * mask.reshape((-1,) + (1,) * (own.ndim - 1))
        batch["mask"] = mask
        yield batch


@runtime_checkable
class BatchSource(Protocol):
    """What ``fit`` and ``evaluate`` need from a dataset: sizes, training and evaluation batches."""

    @property
    def size(self) -> int: ...

    def steps_per_epoch(self, batch_size: int) -> int: ...

    def train_batches(self, batch_size: int, key: jax.Array, *, epoch: int = 0, start: int = 0) -> Iterator: ...

    def eval_batches(self, batch_size: int) -> Iterator: ...


class ArrayBatches(NamedTuple):
    """A dict of arrays as a :class:`BatchSource`: full shuffled training batches (the
    remainder of an epoch is dropped), and padded, masked evaluation batches."""

    data: Dataset

    @property
    def size(self) -> int:
        return dataset_size(self.data)

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.size // batch_size

    def train_batches(self, batch_size: int, key: jax.Array, *, epoch: int = 0, start: int = 0) -> Iterator[Dataset]:
        return shuffled_batches(self.data, batch_size, jax.random.fold_in(key, epoch), start=start)

    def eval_batches(self, batch_size: int) -> Iterator[Dataset]:
        return eval_batches(self.data, batch_size)


def batch_source(data: Dataset | BatchSource) -> BatchSource:
    """``data`` itself if it is a :class:`BatchSource`, else its arrays (on the device) as one."""
    return data if isinstance(data, BatchSource) else ArrayBatches(jax.device_put(dict(data)))
