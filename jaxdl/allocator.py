"""Keep XLA's CPU scratch memory in the heap: glibc malloc settings made when jaxdl is imported.

On CPU, XLA allocates the scratch memory of each call of a compiled function (its
intermediate arrays: 74 MB for the BatchNorm CNN's training step at batch 128) with
``malloc`` and frees it when the call ends. glibc serves a block that large with a fresh
``mmap`` (it is above the mmap threshold, and a thread's arena cannot hold more than
64 MB), so every call takes a page fault on every 4 KiB page of it: 19,000 a step,
about a third of the step's time on our 2-core machine. jaxdl asks glibc
(``mallopt``) to serve every thread from one heap (``M_ARENA_MAX`` 1), never with
``mmap`` (``M_MMAP_MAX`` 0), and to keep freed memory for the next call
(``M_TRIM_THRESHOLD`` 2 GiB): no page faults once the heap has grown to what the calls
need (a few calls on an idle machine, 10-20 when other processes share the CPU), and the
training step about 1.4x faster (docs/results.md).

The price: the process keeps the memory it once used (it is reused, not returned to
the system), and while it warms up the heap may grow to several blocks of the scratch
size, where other threads' small allocations split a freed block. Set
``JAXDL_GLIBC_MALLOC=default`` before importing jaxdl to leave glibc's defaults; any
``MALLOC_*`` or ``GLIBC_TUNABLES`` setting of your own also leaves them alone. Other C
libraries (macOS, Windows, musl) are left alone.

Threads that allocated before the import (a Jupyter kernel's own) keep arenas of their
own, and JAX's threads may be given one of them, where a block above 64 MB still comes
from a fresh ``mmap``. There, start the process with the same settings as environment
variables, :data:`ENVIRONMENT` (``docs/notebooks/run.py`` starts its kernels so).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # glibc's malloc.h
SETTINGS = {M_ARENA_MAX: 1, M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 2**31 - 1}
ENVIRONMENT = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
OPT_OUT = "JAXDL_GLIBC_MALLOC"


def wanted(environ=os.environ) -> bool:
    """Whether jaxdl should tune glibc: not opted out, and no malloc setting of the user's own."""
    if environ.get(OPT_OUT, "").lower() == "default":
        return False
    return not any(name.startswith("MALLOC_") for name in environ) and "malloc" not in environ.get("GLIBC_TUNABLES", "")


def keep_scratch_memory_in_heap() -> bool:
    """Apply :data:`SETTINGS` with glibc's ``mallopt``; True if glibc took them all.

    Does nothing (False) where the C library is not glibc or :func:`wanted` says no.
    """
    if not (sys.platform.startswith("linux") and wanted()):  # glibc is Linux's; macOS and Windows keep theirs
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: musl and others have no mallopt of these settings
        mallopt = libc.mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in SETTINGS.items())


def environment() -> dict[str, str]:
    """:data:`ENVIRONMENT` for a child process (a Jupyter kernel) where jaxdl tuned this one, else {}."""
    return dict(ENVIRONMENT) if TUNED else {}


TUNED = keep_scratch_memory_in_heap()
