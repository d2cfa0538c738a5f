"""jaxdl.compiler: per-backend XLA options, and a jit that still nests inside other transformations."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxdl import compiler
from jaxdl.compiler import CPU_OPTIONS, YNN_OPTION, compiler_options, jit

on_cpu = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are chosen for XLA:CPU")


def conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@on_cpu
def test_cpu_gets_jaxdls_options_and_other_backends_xlas_defaults():
    assert compiler_options() == CPU_OPTIONS
    assert compiler_options("cpu") == CPU_OPTIONS
    assert compiler_options("gpu") == {}


@on_cpu
def test_the_options_keep_convolutions_out_of_ynnpack():
    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    hlo = jax.jit(conv, compiler_options=compiler_options()).lower(x, w).compile().as_text()
    assert "convolution(" in hlo and "__ynn_fusion" not in hlo


def batch_norm_cnn_loss(params, x, y):
    """Two (convolution -> BatchNorm -> ReLU -> 2x2 max pooling) blocks and a dense output."""
    h = x
    for i in ("1", "2"):
        h = conv(h, params["conv" + i])
        mean = h.mean((0, 1, 2))
        var = jnp.maximum(0.0, jnp.square(h).mean((0, 1, 2)) - jnp.square(mean))
        h = jax.nn.relu((h - mean) * (lax.rsqrt(var + 1e-5) * params["scale" + i]) + params["bias" + i])
        n, height, width, c = h.shape
        h = h.reshape(n, height // 2, 2, width // 2, 2, c).max(axis=(2, 4))
    logits = h.reshape(len(h), -1) @ params["dense"]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])


@on_cpu
def test_the_options_compute_a_batch_norm_cnns_gradients_as_xlas_defaults_do():
    # With reductions outside YNNPACK, jaxlib 0.10.2 gets these wrong by over 50% (conv1, scale1, bias1).
    keys = jax.random.split(jax.random.key(0), 4)
    params = {"conv1": jax.random.normal(keys[0], (3, 3, 1, 32)) / 3, "conv2": jax.random.normal(keys[1], (3, 3, 32, 64)) / 17,
              "dense": jax.random.normal(keys[2], (7 * 7 * 64, 10)) / 56, "scale1": jnp.ones(32), "bias1": jnp.zeros(32),
              "scale2": jnp.ones(64), "bias2": jnp.zeros(64)}
    x = jax.random.uniform(keys[3], (16, 28, 28, 1))
    y = jnp.arange(16) % 10
    grad = jax.grad(batch_norm_cnn_loss)
    ours, xlas = jit(grad)(params, x, y), jax.jit(grad)(params, x, y)
    for name in params:
        np.testing.assert_allclose(ours[name], xlas[name], rtol=1e-3, atol=1e-4 * float(jnp.abs(xlas[name]).max()),
                                   err_msg=name)


@on_cpu
def test_xla_flags_of_the_user_win(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{YNN_OPTION}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT")
    assert compiler_options() == {}


@on_cpu
def test_a_jaxlib_without_the_option_gets_its_defaults(monkeypatch):
    monkeypatch.setattr(compiler, "CPU_OPTIONS", {"xla_cpu_no_such_option_anywhere": True})
    assert compiler_options() == {}


def test_jit_computes_what_jax_jit_computes_at_top_level_and_nested():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)
    loss = jit(lambda w, x: jnp.sum(conv(x, w) ** 2))
    reference = lambda w, x: jnp.sum(conv(x, w) ** 2)  # noqa: E731
    np.testing.assert_allclose(loss(w, x), reference(w, x), rtol=1e-5)
    # Nested: JAX refuses compiler options on an inner jit; jaxdl's jit traces plainly there.
    np.testing.assert_allclose(jax.jit(loss)(w, x), reference(w, x), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(loss)(w, x), jax.grad(reference)(w, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jax.vmap(loss, (None, 0))(w, x[:, None]), jax.vmap(reference, (None, 0))(w, x[:, None]),
                               rtol=1e-5)
    total, _ = lax.scan(lambda total, xi: (total + loss(w, xi[None]), None), 0.0, x)
    np.testing.assert_allclose(total, reference(w, x), rtol=1e-5)


@pytest.mark.slow  # a unit test of over 4 s on 2 cores: the full suite runs it
def test_a_jit_made_at_import_time_does_not_start_the_backend():
    """A multi-process run starts JAX's runtime after importing jaxdl, before any JAX call."""
    code = ("import jax\nfrom jax._src import xla_bridge\nimport jaxdl, jaxdl.train\n"
            "from jaxdl.compiler import jit\njit(lambda x: x)\nassert not xla_bridge.backends_are_initialized()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
