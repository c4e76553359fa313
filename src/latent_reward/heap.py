"""Keep freed large blocks in the process's heap while the analysis runs (glibc only; elsewhere nothing changes).

The analysis allocates and frees tensors of tens to hundreds of MB thousands of times (a fold's standardized states,
the leave-one-prompt-out residuals of every penalty). glibc serves each block over 32 MB with a fresh `mmap` and
returns it on free, so every allocation faults its pages in again: on UltraFeedback's shape that was a quarter of the
analysis's wall time in the kernel (benchmarks/analysis_scaling.py, docs/performance.md). Inside `reusing_freed_memory`
blocks come from the heap and freed ones stay there for the next allocation; the process's peak memory is unchanged
(the same blocks are live at the peak), its resident size no longer drops between them. Hand-written with ctypes
because this is a two-call setting of the C library (`mallopt`), which no Python package exposes; an allocator such as
jemalloc preloaded by the user does the same job for the whole process.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536  # glibc's defaults
_KEEP_FREE = 2**31 - 1  # freed heap kept for reuse (mallopt takes an int)

_depth = 0

P = ParamSpec("P")
R = TypeVar("R")


def _libc() -> ctypes.CDLL | None:
    """The running glibc, or None on another C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


@contextmanager
def reusing_freed_memory() -> Iterator[None]:
    """Within the block, large allocations come from the heap and freed memory stays in it (nesting is allowed; the
    outermost block restores glibc's defaults)."""
    global _depth
    libc = _libc() if _depth == 0 else None
    if libc is not None:
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)


def reuses_freed_memory(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run inside `reusing_freed_memory`."""

    @functools.wraps(function)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        with reusing_freed_memory():
            return function(*args, **kwargs)

    return wrapped
