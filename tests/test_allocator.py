"""jaxdl.allocator: glibc keeps XLA's per-call scratch memory in the heap, so calls stop page-faulting."""

import json
import os
import subprocess
import sys

import pytest

from jaxdl import allocator

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                                reason="jaxdl tunes glibc's malloc only")

# A jitted call whose scratch memory (exp(x), 40 MB) is above glibc's largest mmap threshold (32 MiB)
FAULTS_PER_CALL = """
import json, resource
import jaxdl, jax.numpy as jnp
x = jnp.ones((2500, 4000))
row_sums = jaxdl.jit(lambda x: jnp.exp(x) @ jnp.ones(4000))
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    row_sums(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tuned": jaxdl.allocator.TUNED, "faults": faults}))
"""
SCRATCH_PAGES = 2500 * 4000 * 4 // 4096


def faults_per_call(**environ) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", FAULTS_PER_CALL], env={**env, **environ}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@glibc_only
def test_once_warm_calls_reuse_their_scratch_memory_and_opting_out_brings_the_page_faults_back():
    tuned = faults_per_call()
    assert tuned["tuned"] is True
    assert max(tuned["faults"][-4:]) < SCRATCH_PAGES / 10, tuned["faults"]  # the heap grows for a few calls, then no more
    default = faults_per_call(JAXDL_GLIBC_MALLOC="default")
    assert default["tuned"] is False
    assert min(default["faults"][-4:]) > SCRATCH_PAGES / 2, default["faults"]  # a fresh mmap at every call


@pytest.mark.parametrize("environ, expected", [
    ({}, True),
    ({"JAXDL_GLIBC_MALLOC": "default"}, False),
    ({"JAXDL_GLIBC_MALLOC": "DEFAULT"}, False),
    ({"MALLOC_ARENA_MAX": "4"}, False),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"}, False),
    ({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, True),
])
def test_a_users_own_malloc_settings_or_the_opt_out_leave_glibc_alone(environ, expected):
    assert allocator.wanted(environ) is expected
