"""Keep freed large blocks in the process's heap while the analysis runs (glibc only; elsewhere nothing changes).

The analysis allocates and frees tensors of tens to hundreds of MB thousands of times (a fold's standardized states,
the leave-one-prompt-out residuals of every penalty). glibc serves each block over 32 MB with a fresh `mmap` and
returns it on free, so every allocation faults its pages in again: a 2,398-row, 576-wide analysis spent 75 s in the
kernel and took 229 s; with large blocks kept in the heap, 5.5 s and 171 s (docs/performance.md). Inside
`reusing_freed_memory` blocks come from the heap and freed ones stay there for the next allocation; the resident size
no longer drops between them, and fragmentation can raise the peak (on UltraFeedback's shape 2.04 -> 2.50 GB).
Hand-written with ctypes because this is a setting of the C library (`mallopt`), which no Python package exposes; an
allocator such as jemalloc preloaded by the user does the same job for the whole process.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # mallopt parameters (malloc.h)
_KEEP_FREE = 2**31 - 1  # freed heap kept for reuse inside the block (mallopt takes an int)
# After the block: glibc's default count of mapped blocks, and the thresholds where its own adjustment of them ends
# up after large frees (a mallopt call turns that adjustment off for the process, so they are set, not restored).
_AFTER = {_M_MMAP_MAX: 65536, _M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 64 * 2**20}

_lock = threading.Lock()
_depth = 0

P = ParamSpec("P")
R = TypeVar("R")


def _libc() -> ctypes.CDLL | None:
    """The running glibc, or None on another C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def _enter() -> None:
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1 and (libc := _libc()) is not None:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)


def _leave() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0 and (libc := _libc()) is not None:
            for parameter, value in _AFTER.items():
                libc.mallopt(parameter, value)
            libc.malloc_trim(0)  # hand the heap kept for reuse back to the system


@contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """Within the block, large allocations come from the heap and freed memory stays in it (blocks may nest, also
    across threads: the setting lasts until the last one ends). After it, blocks over 32 MB are mapped and returned
    again, and the heap kept for reuse is handed back."""
    _enter()
    try:
        yield
    finally:
        _leave()


def reuses_freed_memory(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run inside `reusing_freed_memory`."""

    @functools.wraps(function)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with reusing_freed_memory():
            return function(*args, **kwargs)

    return wrapped
