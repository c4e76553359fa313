"""Counts and distributions of a loaded dataset (for `data inspect` and the report)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from latent_reward.data.formats import Dataset


def summarize(dataset: Dataset, bins: int = 10) -> dict[str, Any]:
    examples = dataset.examples
    ratings = np.array([e.rating for e in examples])
    per_group = Counter(e.group for e in examples)
    sizes = np.array(list(per_group.values()))
    distinct = np.unique(ratings)
    if distinct.size <= 12:  # integer scales and pairs: one bar per value
        histogram = [(float(v), int((ratings == v).sum())) for v in distinct]
    else:
        counts, edges = np.histogram(ratings, bins=bins)
        histogram = [(float((edges[i] + edges[i + 1]) / 2), int(c)) for i, c in enumerate(counts)]
    generators = Counter(e.meta.get("generator") for e in examples if e.meta.get("generator"))
    return {
        "source": dataset.source,
        "format": dataset.format,
        "records": dataset.n_records,
        "examples": len(examples),
        "groups": len(per_group),
        "responses_per_group": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
        "rating": {"min": float(ratings.min()), "mean": float(ratings.mean()), "max": float(ratings.max()),
                   "std": float(ratings.std())},
        "rating_histogram": histogram,
        "aspects": sorted({name for e in examples for name in e.aspects}),
        "generators": len(generators),
        "multi_turn": sum(len(e.messages) > 2 for e in examples),
        "skipped": dataset.skipped,
    }
