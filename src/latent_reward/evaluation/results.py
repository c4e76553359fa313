"""Typed results shared by every experiment: intervals, scores, paired tests, comparisons, and the
names of every baseline and control (one place, so the report, figures and compare agree).

All are pydantic models: they serialize to results.json and load back for `compare`.
"""

from __future__ import annotations

import math
import re
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

# Predictors that use no residual states, and controls. The names are what results.json and the report show.
LENGTH = "response length"
TEXT_STATS = "length + text statistics"
GENERATOR = "generator identity"
TFIDF_RESPONSE = "TF-IDF response"
TFIDF_PROMPT_RESPONSE = "TF-IDF prompt + response"
LOGPROB = "mean log-prob"
LAYER0 = "layer 0 (embeddings)"
RANDOM_INIT = "random-init model"
SHUFFLED_WITHIN = "control: ratings shuffled within prompt"
SHUFFLED_ALL = "control: ratings shuffled across responses"
# Baselines that read only the text: the probe must beat these before the states are credited.
TEXT_BASELINES = (LENGTH, TEXT_STATS, TFIDF_RESPONSE, TFIDF_PROMPT_RESPONSE)

Metric = Literal["pearson", "spearman", "r2", "mae", "within_acc", "within_spearman"]  # the fields of `Scores`
METRICS: tuple[Metric, ...] = get_args(Metric)
HEADLINE_METRICS: tuple[Metric, ...] = ("pearson", "within_acc")  # tested against every comparison, with intervals
METRIC_LABELS: dict[Metric, str] = {
    "pearson": "Pearson r",
    "spearman": "Spearman rho",
    "r2": "R^2",
    "mae": "MAE",
    "within_acc": "within-prompt accuracy",
    "within_spearman": "within-prompt Spearman",
}
CHANCE: dict[Metric, float] = {"pearson": 0.0, "spearman": 0.0, "within_acc": 0.5, "within_spearman": 0.0}


class Result(BaseModel):
    """Base of every typed result: a pydantic model that ignores unknown fields when loaded."""

    model_config = ConfigDict(extra="ignore")


def slug(name: str) -> str:
    """A plain file-name stem: lower case letters, digits and underscores."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def finite(value: float | None) -> float | None:
    """The value as a float, or None when it is missing, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)


class Interval(Result):
    """A point estimate with its 95% interval (bootstrap over prompts unless stated)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, value: float | None, low: float | None = None, high: float | None = None) -> Interval:
        """An Interval whose missing, NaN or infinite values become None."""
        return cls(value=finite(value), low=finite(low), high=finite(high))

    @property
    def known(self) -> bool:
        """Whether there is a point estimate."""
        return self.value is not None

    @property
    def sort_key(self) -> float:
        """The point estimate for choosing the largest: minus infinity when there is none (it never comes first)."""
        return self.value if self.value is not None else -math.inf

    def excludes(self, point: float) -> bool:
        """Whether the whole interval lies on one side of `point`."""
        return self.low is not None and self.high is not None and (self.low > point or self.high < point)

    def above(self, point: float) -> bool:
        """Whether the whole interval lies above `point`."""
        return self.low is not None and self.low > point

    def __str__(self) -> str:
        return format(self)

    def __format__(self, spec: str) -> str:
        digits = spec or ".3f"
        if self.value is None:
            return "n/a"
        if self.low is None or self.high is None:
            return format(self.value, digits)
        return f"{self.value:{digits}} [{self.low:{digits}}, {self.high:{digits}}]"


class Scores(Result):
    """Every metric of one predictor on one set of rows, each with its interval."""

    n_examples: int = 0
    n_prompts: int = 0
    n_pairs: int = 0  # within-prompt pairs with different ratings
    pearson: Interval = Interval()
    spearman: Interval = Interval()
    r2: Interval = Interval()
    mae: Interval = Interval()
    within_acc: Interval = Interval()
    within_spearman: Interval = Interval()  # mean over prompts with 3+ responses; None where there are none

    def metric(self, name: Metric) -> Interval:
        """The Interval of metric `name` (one of METRICS)."""
        return getattr(self, name)


class PairedDifference(Result):
    """A metric of the probe minus the same metric of another predictor, on the same prompts."""

    metric: Metric
    difference: Interval  # paired bootstrap: the same resampled prompts for both
    p_value: float | None = None  # paired permutation test (swapping the two predictions prompt by prompt), two-sided
    n_permutations: int | None = None  # B: the p-value's floor is 1 / (B + 1)
    equivalence: Interval | None = None  # the paired bootstrap's 90% interval: inside +-margin is equivalence by TOST


class NullTest(Result):
    """An observed statistic against the distribution it has when the link to the ratings is broken."""

    metric: str  # one of METRICS, or a statistic of its own (the trajectory's)
    observed: float | None
    null_mean: float | None
    null_low: float | None  # 2.5% and 97.5% quantiles of the null
    null_high: float | None
    p_value: float | None  # (1 + #null >= observed) / (1 + n)
    n_permutations: int


class Cell(Result):
    """Where a probe reads: its kind, position and layer."""

    position: str
    layer: int
    probe: str = "ridge"

    def __str__(self) -> str:
        return f"{self.probe} @ {self.position} layer {self.layer}"


class Comparison(Result):
    """One predictor's scores beside the probe's, with the paired tests against the probe."""

    name: str
    kind: Literal["probe", "baseline", "control"]
    cell: Cell | None = None  # for predictors read from residual states
    scores: Scores
    validation: Scores | None = None  # on the single split's validation prompts (used to choose the strongest)
    versus_probe: dict[Metric, PairedDifference] = {}  # metric -> probe minus this predictor
    null: dict[Metric, NullTest] = {}  # controls: metric -> the real probe's value against the control's distribution


def strongest(comparisons: list[Comparison], metric: Metric, names: tuple[str, ...] | None = None) -> Comparison | None:
    """The baseline with the best validation value of `metric` (never chosen on test scores)."""
    sign = -1 if metric == "mae" else 1
    candidates = [
        (sign * value, c)
        for c in comparisons
        if c.kind == "baseline"
        and (names is None or c.name in names)
        and c.validation is not None
        and (value := c.validation.metric(metric).value) is not None
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda pair: pair[0])[1]
