"""Batches of an in-memory dataset: shuffled training epochs and padded, masked evaluation batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.data import dataset_size, eval_batches, shuffled_batches


def indexed(n, token_mask=None):
    """A dataset whose example i is recognisable: x = i, y = 10 i, and a (n, 3) field."""
    data = {
        "x": jnp.arange(n, dtype=jnp.float32),
        "y": 10 * jnp.arange(n),
        "seq": jnp.arange(3 * n).reshape(n, 3),
    }
    if token_mask is not None:
        data["mask"] = token_mask
    return data


def ids(batches):
    return [np.asarray(batch["y"] // 10).tolist() for batch in batches]


# ------------------------------------------------------------------ dataset_size
def test_dataset_size_is_the_shared_first_axis():
    assert dataset_size(indexed(7)) == 7
    assert dataset_size({"x": np.zeros((5, 2, 2))}) == 5


@pytest.mark.parametrize(
    "data",
    [
        {"x": jnp.zeros((5, 2)), "y": jnp.zeros(4)},
        {"x": jnp.zeros(3), "y": jnp.zeros(3), "mask": jnp.zeros(2)},
        {"x": jnp.zeros(3), "n": jnp.float32(3)},  # a scalar has no example axis
        {},
    ],
    ids=["x5-y4", "mask2", "scalar", "empty"],
)
def test_dataset_size_rejects_arrays_without_a_shared_first_axis(data):
    with pytest.raises(ValueError, match="sharing their first \\(example\\) axis; got sizes") as caught:
        dataset_size(data)
    for name in data:  # the message names every array with its size
        assert f"'{name}'" in str(caught.value)


def test_batches_of_mismatched_arrays_are_refused():
    data = {"x": jnp.zeros((5, 2)), "y": jnp.zeros(4)}
    with pytest.raises(ValueError, match="got sizes"):
        next(shuffled_batches(data, 2, jax.random.key(0)))
    with pytest.raises(ValueError, match="got sizes"):
        next(eval_batches(data, 2))


# ------------------------------------------------------------- shuffled batches
@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (7, 7), (9, 1)])
def test_an_epoch_covers_each_example_at_most_once_and_drops_the_remainder(n, batch_size):
    batches = list(shuffled_batches(indexed(n), batch_size, jax.random.key(0)))
    assert len(batches) == n // batch_size
    seen = [i for batch in ids(batches) for i in batch]
    assert len(seen) == len(set(seen)) == (n // batch_size) * batch_size
    assert set(seen) <= set(range(n))
    for batch in batches:  # every field of a batch comes from the same examples, in full shape
        assert batch["x"].shape == (batch_size,) and batch["seq"].shape == (batch_size, 3)
        np.testing.assert_array_equal(batch["y"], 10 * batch["x"].astype(int))
        np.testing.assert_array_equal(batch["seq"][:, 0], 3 * batch["x"].astype(int))


def test_the_order_depends_only_on_the_key():
    data = indexed(20)
    first = ids(shuffled_batches(data, 4, jax.random.key(1)))
    assert ids(shuffled_batches(data, 4, jax.random.key(1))) == first
    assert ids(shuffled_batches(data, 4, jax.random.key(2))) != first
    assert first != ids([{"y": 10 * jnp.arange(i, i + 4)} for i in range(0, 20, 4)])  # it is shuffled
    # over many keys the dropped remainder is not always the same example
    dropped = {tuple(sorted(set(range(10)) - set(sum(ids(shuffled_batches(indexed(10), 3, jax.random.key(k))), []))))
               for k in range(8)}
    assert len(dropped) > 1


@pytest.mark.parametrize("start", [0, 1, 3, 5, 6])
def test_start_skips_batches_of_the_same_order(start):
    data, key = indexed(20), jax.random.key(3)
    full = ids(shuffled_batches(data, 4, key))
    assert ids(shuffled_batches(data, 4, key, start=start)) == full[start:]


# ---------------------------------------------------------------- eval batches
@pytest.mark.parametrize("n, batch_size", [(10, 4), (8, 4), (3, 5), (1, 1)])
def test_eval_batches_cover_every_example_once_in_order(n, batch_size):
    batches = list(eval_batches(indexed(n), batch_size))
    assert len(batches) == -(-n // batch_size)
    for batch in batches:  # one shape for every batch: one compilation
        assert batch["x"].shape == (batch_size,) and batch["seq"].shape == (batch_size, 3)
        assert batch["mask"].shape == (batch_size,) and batch["mask"].dtype == jnp.float32
    mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
    xs = np.concatenate([np.asarray(b["x"]) for b in batches])
    assert set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask, np.arange(len(mask)) < n)  # only the padding is zeroed
    np.testing.assert_array_equal(xs[mask == 1], np.arange(n))


def test_eval_batches_merge_the_datasets_own_mask():
    n, batch_size = 5, 4
    token_mask = jnp.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 0]], jnp.float32)
    batches = list(eval_batches(indexed(n, token_mask), batch_size))
    merged = np.concatenate([np.asarray(b["mask"]) for b in batches])
    assert merged.shape == (8, 3)
    np.testing.assert_array_equal(merged[:n], token_mask)
    np.testing.assert_array_equal(merged[n:], 0.0)  # padding repeats example 0, whose own mask is not 0


def test_eval_batches_merge_a_per_example_weight_mask():
    weights = jnp.array([0.5, 2.0, 0.0])
    (batch,) = eval_batches(indexed(3, weights), 4)
    np.testing.assert_array_equal(batch["mask"], [0.5, 2.0, 0.0, 0.0])
