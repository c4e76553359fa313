"""Adjusting p-values for the number of tests read together (the secondary contrasts of an experiment).

Holm's step-down method, written here because statsmodels (whose `multipletests` has it) is not a dependency and scipy
has only false-discovery-rate control (`false_discovery_control`), not family-wise error control.
"""

from __future__ import annotations

import numpy as np


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the given order (None stays None and is not counted as a test): the i-th smallest of
    m is multiplied by m - i + 1, made non-decreasing in that order, and capped at 1."""
    known = {i: float(p) for i, p in enumerate(p_values) if p is not None and np.isfinite(p)}
    out: list[float | None] = [None] * len(p_values)
    ordered = sorted(known, key=known.__getitem__)
    running = 0.0
    for rank, i in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * known[i]))
        out[i] = running
    return out
