"""Known answers for evaluation/results.py: which baseline is the strongest, and when an interval excludes a point."""

import pytest

from latent_reward.evaluation.results import Comparison, Interval, Scores, strongest


@pytest.mark.parametrize(
    "low,high,point,expected",
    [
        (0.1, 0.3, 0.0, True),  # wholly above
        (-0.3, -0.1, 0.0, True),  # wholly below
        (-0.1, 0.3, 0.0, False),  # straddles
        (0.0, 0.3, 0.0, False),  # touches the point: not excluded (strict)
        (-0.3, 0.0, 0.0, False),
        (0.52, 0.6, 0.5, True),
        (0.4, 0.49, 0.5, True),
        (None, 0.3, 0.5, False),  # no interval: never excluded
        (0.1, None, -1.0, False),
    ],
)
def test_interval_excludes(low, high, point, expected):
    interval = Interval(value=0.2, low=low, high=high)
    assert interval.excludes(point) is expected
    if low is not None and high is not None:
        assert interval.excludes(point) == (interval.above(point) or high < point)


def test_interval_above_and_of():
    assert Interval.of(0.5, 0.1, 0.9).above(0.0) and not Interval.of(0.5, 0.0, 0.9).above(0.0)
    assert not Interval.of(0.5).above(0.0)
    assert Interval.of(float("nan"), float("inf"), 1.0) == Interval(value=None, low=None, high=1.0)


def _comparison(name, validation, test, kind="baseline", metric="within_acc"):
    return Comparison(
        name=name,
        kind=kind,
        scores=Scores(**{metric: Interval.of(test)}),
        validation=None if validation is None else Scores(**{metric: Interval.of(validation)}),
    )


def test_strongest_is_chosen_on_validation_never_on_test():
    comparisons = [
        _comparison("a", validation=0.60, test=0.70),
        _comparison("b", validation=0.65, test=0.55),  # best on validation, worse on test
        _comparison("c", validation=None, test=0.90),  # no validation: never chosen
        _comparison("probe", validation=0.99, test=0.99, kind="probe"),  # not a baseline
        _comparison("control", validation=0.98, test=0.98, kind="control"),
        _comparison("d", validation=float("nan"), test=0.95),  # unknown validation value
    ]
    assert strongest(comparisons, "within_acc").name == "b"
    assert strongest(comparisons, "within_acc", names=("a", "c", "d")).name == "a"
    assert strongest(comparisons, "within_acc", names=("c", "d")) is None
    assert strongest([], "within_acc") is None


def test_strongest_minimizes_mae_and_maximizes_the_rest():
    comparisons = [
        _comparison("a", 0.8, 0.8, metric="mae"),
        _comparison("b", 0.5, 0.9, metric="mae"),
        _comparison("c", 1.2, 0.1, metric="mae"),
    ]
    assert strongest(comparisons, "mae").name == "b"
    comparisons = [_comparison("a", -0.2, 0.0, metric="pearson"), _comparison("b", -0.5, 0.9, metric="pearson")]
    assert strongest(comparisons, "pearson").name == "a"
