"""Counts and distributions of a loaded dataset (for `data inspect` and the report)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from pydantic import BaseModel

from latent_reward.data.formats import Dataset
from latent_reward.data.schema import Example


class DataSummary(BaseModel):
    """Counts and rating distribution of a dataset (what `summarize` returns)."""

    source: str = ""
    format: str = ""
    records: int | None = None
    examples: int
    groups: int
    responses_per_group: dict[str, float]
    rating: dict[str, float]
    rating_histogram: list[tuple[float, int]]
    aspects: list[str]
    generators: int
    multi_turn: int
    splits: dict[str, int] = {}  # examples per split the data names itself (e.g. train / eval)
    skipped: dict[str, int] = {}


def summarize(dataset: Dataset, bins: int = 10) -> DataSummary:
    """A DataSummary of a loaded Dataset (with its source, format, record count and skips)."""
    return summarize_examples(
        dataset.examples,
        bins,
        source=dataset.source,
        format=dataset.format,
        records=dataset.n_records,
        skipped=dataset.skipped,
    )


def summarize_examples(examples: list[Example], bins: int = 10, **extra) -> DataSummary:
    """Counts and the rating distribution of Examples."""
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
    return DataSummary(
        examples=len(examples),
        groups=len(per_group),
        responses_per_group={"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
        rating={
            "min": float(ratings.min()),
            "mean": float(ratings.mean()),
            "max": float(ratings.max()),
            "std": float(ratings.std()),
        },
        rating_histogram=histogram,
        aspects=sorted({name for e in examples for name in e.aspects}),
        generators=len(generators),
        multi_turn=sum(len(e.messages) > 2 for e in examples),
        splits=dict(Counter(str(e.meta["source_split"]) for e in examples if e.meta.get("source_split"))),
        **extra,
    )
