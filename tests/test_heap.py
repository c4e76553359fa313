"""heap.reusing_freed_memory: inside it a freed 64 MB block stays in the process (the next one reuses it); outside,
glibc returns it to the system, before the block and after it; after it, 8 MB blocks are reused from the heap."""

import os
import platform
import resource

import numpy as np
import pytest

from latent_reward import heap

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)

BLOCK = 64 * 2**20


def _resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _kept_after_free() -> int:
    """Resident bytes a freed, touched 64 MB block leaves behind."""
    before = _resident()
    block = np.ones(BLOCK // 8)
    del block
    return _resident() - before


def test_freed_blocks_stay_inside_and_are_returned_outside():
    assert _kept_after_free() < BLOCK // 4  # glibc's default: the block was mmapped and unmapped
    with heap.reusing_freed_memory():
        with heap.reusing_freed_memory():  # nested: the inner block leaves the setting alone
            pass
        kept = _kept_after_free()
        assert kept > BLOCK // 2
        assert _kept_after_free() < BLOCK // 4  # the next block reuses the kept memory: no growth
    assert _kept_after_free() < BLOCK // 4  # large blocks are returned again
    _cycle(8 * 2**20, 2)  # warm up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    _cycle(8 * 2**20, 20)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults < 20 * 2048 // 4  # not mapped afresh each time


def _cycle(size: int, times: int) -> None:
    for _ in range(times):
        block = np.ones(size // 8)
        del block


def test_the_decorator_runs_the_function_inside_the_block():
    seen = []
    wrapped = heap.reuses_freed_memory(lambda value: seen.append(heap._depth) or value)
    assert wrapped(3) == 3 and seen == [1] and heap._depth == 0
