"""jaxdl.allocator: glibc keeps XLA's per-call scratch memory in the heap, so calls stop page-faulting."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from jaxdl import allocator

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                                reason="jaxdl tunes glibc's malloc only")

# A jitted call whose scratch memory, exp(x) of 80 MB, is above the largest block glibc serves from a heap by
# default (32 MiB in the main arena, 64 MiB in a thread's): with glibc's defaults every call maps it afresh
FAULTS_PER_CALL = """
import json, resource, threading
threads = [threading.Thread(target=lambda: bytearray(1 << 20)) for _ in range(THREADS_FIRST)]
for thread in threads: thread.start()
for thread in threads: thread.join()
import jaxdl, jax.numpy as jnp
x = jnp.ones((5000, 4000))
row_sums = jaxdl.jit(lambda x: jnp.exp(x) @ jnp.ones(4000))
faults = []
for _ in range(CALLS):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    row_sums(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tuned": jaxdl.allocator.TUNED, "faults": faults}))
"""
SCRATCH_PAGES = 5000 * 4000 * 4 // 4096
# The heap grows for a few calls alone, for 10-20 when other processes share the CPU (the order of the threads'
# small allocations around the big block varies, so some calls find no free block large enough), then no more
CALLS, WARM = 60, 20


def faults_per_call(threads_first: int = 0, **environ) -> dict:
    """Page faults of each of ``CALLS`` calls in a fresh process, after ``threads_first`` threads allocated memory (as a
    Jupyter kernel's do before a notebook imports jaxdl), with ``environ`` added to its environment."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    script = FAULTS_PER_CALL.replace("THREADS_FIRST", str(threads_first)).replace("CALLS", str(CALLS))
    done = subprocess.run([sys.executable, "-c", script], env={**env, **environ}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@glibc_only
def test_once_warm_calls_reuse_their_scratch_memory_and_opting_out_brings_the_page_faults_back():
    tuned = faults_per_call()
    assert tuned["tuned"] is True
    assert statistics.median(tuned["faults"][-WARM:]) < SCRATCH_PAGES / 10, tuned["faults"]
    default = faults_per_call(JAXDL_GLIBC_MALLOC="default")
    assert default["tuned"] is False
    assert statistics.median(default["faults"][-WARM:]) > SCRATCH_PAGES / 2, default["faults"]  # a fresh mmap each call


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


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_other_systems_keep_their_own_malloc(platform, monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", platform)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: pytest.fail("looked for glibc"))
    assert allocator.keep_scratch_memory_in_heap() is False


@glibc_only
def test_a_process_whose_threads_start_before_the_import_reuses_its_scratch_memory_with_the_settings_in_its_environment():
    # Without them, JAX's threads may get those threads' arenas, where 80 MB always comes from a fresh mmap: some
    # calls fault and some do not, depending on which thread runs them (seen: 4 to 15 of 15 calls faulting).
    from_the_start = faults_per_call(threads_first=4, **allocator.ENVIRONMENT)
    assert from_the_start["tuned"] is False  # the user's (here: jaxdl's) MALLOC_* settings: jaxdl leaves them be
    assert statistics.median(from_the_start["faults"][-WARM:]) < SCRATCH_PAGES / 10, from_the_start["faults"]


def test_a_child_process_gets_the_settings_as_environment_variables_where_they_were_made():
    assert allocator.environment() == (allocator.ENVIRONMENT if allocator.TUNED else {})
