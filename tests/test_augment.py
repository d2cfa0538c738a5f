"""Affine augmentation on the device: against hand computations, and as a layer of the CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdl as dl
from jaxdl.augment import RandomAffine, affine_transform
from jaxdl.models import cnn


def transform(images, angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    n = len(images)
    return np.asarray(jax.jit(affine_transform)(jnp.asarray(images), jnp.full((n,), angle), jnp.full((n,), scale),
                                       jnp.tile(jnp.asarray(shift, jnp.float32), (n, 1))))


def dot(height=5, width=5, row=0, col=2):
    image = np.zeros((1, height, width, 1), np.float32)
    image[0, row, col, 0] = 1.0
    return image


def test_identity_parameters_give_the_images_back():
    images = np.random.default_rng(0).random((3, 7, 9, 2), dtype=np.float32)
    np.testing.assert_array_equal(transform(images), images)


def test_quarter_and_half_turns_match_numpy():
    square = np.random.default_rng(1).random((2, 6, 6, 3), dtype=np.float32)
    # counter-clockwise as displayed (rows downward): numpy's rot90 over (rows, columns)
    np.testing.assert_allclose(transform(square, angle=90.0), np.rot90(square, axes=(1, 2)), atol=1e-5)
    wide = np.random.default_rng(2).random((1, 4, 7, 1), dtype=np.float32)
    np.testing.assert_allclose(transform(wide, angle=180.0), wide[:, ::-1, ::-1], atol=1e-5)


def test_an_eighth_turn_of_a_dot_by_hand():
    # A dot 2 pixels above the centre of a 5x5 image turns 45 degrees counter-clockwise, to
    # 2/sqrt(2) = 1.414 pixels up and left of the centre. Output pixel (1, 1), one up and one
    # left, reads the input at 1.414 rows above the centre in the centre column: between
    # rows 0 and 1, sqrt(2) - 1 of the way from row 1, so it gets 1 - (2 - sqrt(2)) of the dot.
    out = transform(dot(), angle=45.0)[0, ..., 0]
    assert out[1, 1] == pytest.approx(np.sqrt(2) - 1, abs=1e-6)
    np.testing.assert_allclose(out, out.T, atol=1e-6)  # the dot lands on the diagonal: symmetric about it
    assert out[:, 2:].max() < 1e-6 and out[3:].max() < 1e-6  # nothing right of or below the centre


def test_shifts_and_zoom_by_hand():
    image = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    down = transform(image, shift=(1.0, 0.0))[0, ..., 0]
    np.testing.assert_array_equal(down[0], 0)  # zeros come in at the top
    np.testing.assert_array_equal(down[1:], image[0, :4, :, 0])
    half_right = transform(image, shift=(0.0, 0.5))[0, ..., 0]
    np.testing.assert_allclose(half_right[:, 1:], (image[0, :, :-1, 0] + image[0, :, 1:, 0]) / 2)
    np.testing.assert_allclose(half_right[:, 0], image[0, :, 0, 0] / 2)  # half of it from outside: 0
    doubled = transform(dot(row=1, col=2), scale=2.0)[0, ..., 0]  # a dot 1 above the centre moves 2 above
    assert doubled[0, 2] == pytest.approx(1.0) and doubled[2, 2] == 0.0


def test_affine_transform_refuses_parameters_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"takes angle \(2,\), scale \(2,\) and shift \(2, 2\), got \(3,\)"):
        affine_transform(jnp.zeros((2, 5, 5, 1)), jnp.zeros(3), jnp.ones(2), jnp.zeros((2, 2)))
    with pytest.raises(dl.LayerError, match=r"\(N, H, W, C\)"):
        affine_transform(jnp.zeros((5, 5, 1)), jnp.zeros(5), jnp.ones(5), jnp.zeros((5, 2)))


def test_random_affine_trains_on_moved_copies_and_evaluates_untouched():
    images = np.zeros((64, 12, 12, 1), np.float32)
    images[:, 4:8, 4:8] = 1.0  # a centred square
    layer = RandomAffine(rotation=15.0, zoom=0.1, shift=1.0)
    _, params = layer.init(jax.random.key(0), (-1, 12, 12, 1))
    assert layer.apply(params, images) is images  # evaluation: the identity
    moved = np.asarray(jax.jit(lambda x, key: layer.apply(params, x, key=key, train=True))(images, jax.random.key(1)))
    again = np.asarray(layer.apply(params, images, key=jax.random.key(1), train=True))
    np.testing.assert_allclose(moved, again, atol=1e-6)  # the key decides it
    assert len({m.tobytes() for m in moved}) == 64  # each image its own transform
    areas = moved.sum(axis=(1, 2, 3))
    assert np.all((areas > 16 * 0.9**2 * 0.95) & (areas < 16 * 1.1**2 * 1.05))  # the square, scaled by 0.9-1.1
    with pytest.raises(dl.LayerError, match="needs a random key"):
        layer.apply(params, images, train=True)


@pytest.mark.parametrize("settings, message", [
    ({"rotation": -1.0}, "rotation must be a number >= 0"),
    ({"zoom": 1.0}, r"zoom must be below 1"),
    ({"shift": "2"}, "shift must be a number >= 0"),
])
def test_random_affine_refuses_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        RandomAffine(**settings)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_the_batch_norm_cnn_keeps_state_and_augments_with_one_resampling():
    model = cnn(10, features=((4, 4), 8), hidden=16, batch_norm=True, rotation=10.0, zoom=0.1, shift=2)
    shape, params, state = model.init(jax.random.key(0), (-1, 28, 28, 1))
    assert shape == (-1, 10) and model.stateful
    assert list(dict(model.children))[:3] == ["randomaffine", "conv1", "batchnorm1"]
    kinds = [child.kind for child in dict(model.children).values()]
    assert kinds.count("Conv") == 3 and kinds.count("BatchNorm") == 4 and kinds.count("MaxPool") == 2
    assert "b" not in params["conv1"] and "b" not in params["hidden"] and "b" in params["output"]
    x = jnp.asarray(np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32))
    train = jax.jit(lambda params, x, state, key: model.apply(params, x, state=state, key=key, train=True))
    logits, new_state = train(params, x, state, jax.random.key(1))
    assert logits.shape == (8, 10)
    assert not np.allclose(new_state["batchnorm1"]["mean"], state["batchnorm1"]["mean"])
    assert isinstance(dict(cnn(shift=2).children)["randomshift"], dl.Layer)  # whole pixels alone: the cheap crop
    with pytest.raises(ValueError, match="moves whole pixels"):
        cnn(shift=1.5)
