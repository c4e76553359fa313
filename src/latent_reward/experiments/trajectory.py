"""Reward token by token: the probe's estimate at every response token, better vs worse response to the same prompt.

Two probes read one layer (the validation-best ridge layer at response_last): the response-level probe
trained at `response_last` (what it would say if the response ended at this token) and a probe
trained on every response token, each token labelled with its response's rating. On held-out
prompts, each prompt contributes one pair: its best- and worst-rated response. The curves are the
paired difference (better minus worse) per bin of the response, by absolute token index and by
relative position, with simultaneous 95% bands that resample prompts. A curve "separates" from the
first bin after which its band stays above zero. A null from probes fitted the same way on ratings
shuffled within each training prompt (same layer, position and penalty choice: they keep everything that
differs between prompts and lose only which response was rated higher) shows what separation needs no
within-prompt reward information.
"""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import ConfigDict

from latent_reward.activations.store import ActivationStore
from latent_reward.activations.tokens import response_token_states
from latent_reward.analysis.sweep import SweepFit
from latent_reward.evaluation.controls import within_group_permutations
from latent_reward.evaluation.metrics import Resampler
from latent_reward.evaluation.paired import null_test
from latent_reward.evaluation.results import Interval, NullTest, Result
from latent_reward.models.loading import LoadedModel
from latent_reward.positions import RESPONSE_POSITIONS
from latent_reward.probes import Probe, RidgeProbe
from latent_reward.probes.ridge import fit_ridge_all_layers

END_PROBE, TOKEN_PROBE = "end-of-response probe", "all-token probe"


class TrajectoryConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pairs: int = 40  # held-out prompts, each giving its best- and worst-rated response
    train_responses: int = 120  # training responses for the all-token probe
    tokens_per_response: int = 48
    relative_bins: int = 10
    token_bin: int = 8  # width of an absolute-position bin, in tokens
    max_token_bins: int = 16
    null_probes: int = 99  # probes fitted on within-prompt-shuffled training ratings (one batched fit)
    n_boot: int = 1000
    seed: int = 0


class TrajectoryCurve(Result):
    probe: str
    axis: str  # "relative" (share of the response) or "tokens" (absolute index)
    bins: list[float]  # bin start (relative: 0..1; tokens: index)
    better: list[float | None]  # mean estimate of the better response per bin
    worse: list[float | None]
    difference: list[Interval]  # better minus worse, with simultaneous 95% bands over bins
    pairs: list[int]  # pairs that reach each bin
    separates_from: float | None  # first bin after which the band stays above zero


class LensItem(Result):
    kind: str
    id: str
    rating: float
    tokens: list[str]
    estimates: list[float]


class TrajectoryResult(Result):
    layer: int
    n_pairs: int
    n_train: int
    curves: list[TrajectoryCurve]
    null: NullTest | None = (
        None  # end-of-response probe: standardized paired difference vs within-prompt-shuffled probes
    )
    lens: list[LensItem] = []

    def curve(self, probe: str, axis: str) -> TrajectoryCurve | None:
        return next((c for c in self.curves if c.probe == probe and c.axis == axis), None)


def reward_trajectories(
    loaded: LoadedModel, store: ActivationStore, fit: SweepFit, config: TrajectoryConfig | None = None
) -> TrajectoryResult | None:
    """None when no held-out prompt has two differently rated responses."""
    config = config or TrajectoryConfig()
    # the layer is chosen where the end-of-response probe reads: at response_last when the sweep has it
    position = _end_position({c.position for c in fit.result.cells(RidgeProbe.kind)})  # the kind this module refits
    if not position:
        return None
    best = fit.result.val_best(RidgeProbe.kind, position)
    if best is None:
        return None
    layer = best.layer
    rng = np.random.default_rng(config.seed)
    better, worse = _held_out_pairs(fit, rng, config.pairs)
    if not better:
        return None
    examples, rows = store.examples, fit.target.rows
    max_tokens = store.manifest.max_tokens
    end_probe, null_probes = _end_probes(store, fit, layer, position, config)
    token_probe, n_train = _token_probe(loaded, store, fit, layer, rng, config, max_tokens)
    test_rows = [rows[i] for i in better + worse]
    states, rendered = response_token_states(loaded, [examples[i].messages for i in test_rows], layer, max_tokens)
    n = len(better)
    curves = []
    for name, probe in ((END_PROBE, end_probe), (TOKEN_PROBE, token_probe)):
        estimates = [probe.predict(s) for s in states]
        curves += [
            _curve(name, axis, estimates[:n], estimates[n:], fit.target.groups[better], config)
            for axis in ("relative", "tokens")
        ]
    return TrajectoryResult(
        layer=layer,
        n_pairs=n,
        n_train=n_train,
        curves=curves,
        null=_shuffled_probe_null(end_probe, null_probes, states[:n], states[n:], config),
        lens=_lens(
            loaded,
            rendered,
            [end_probe.predict(s) for s in states],
            fit.target.y[better + worse],
            [examples[i].id for i in test_rows],
        ),
    )


def _held_out_pairs(fit: SweepFit, rng, limit: int) -> tuple[list[int], list[int]]:
    """Per test prompt with differently rated responses: (its best-rated row, its worst-rated row), kept-row indices."""
    test = np.flatnonzero(fit.plan.masks["test"])
    y, groups = fit.target.y, fit.target.groups
    better, worse = [], []
    for group in rng.permutation(np.unique(groups[test])):
        rows = test[groups[test] == group]
        if np.ptp(y[rows]) > 0:
            better.append(int(rows[np.argmax(y[rows])]))
            worse.append(int(rows[np.argmin(y[rows])]))
        if len(better) >= limit:
            break
    return better, worse


def _end_position(positions: set[str]) -> str | None:
    """response_last, or the first response position the sweep has."""
    return next((p for p in ("response_last", *RESPONSE_POSITIONS) if p in positions), None)


def _end_probes(
    store: ActivationStore, fit: SweepFit, layer: int, position: str, config: TrajectoryConfig
) -> tuple[RidgeProbe, list[RidgeProbe]]:
    """The end-of-response ridge probe on the training rows, and `null_probes` probes fitted the same way (one batched
    grouped CV) on the training ratings shuffled within each prompt."""
    x = fit.target.states(store, position, [layer])[:, 0]
    train = fit.plan.masks["train"]
    y, groups = fit.target.y[train], fit.target.groups[train]
    shuffled = within_group_permutations(y, groups, config.null_probes, config.seed)  # [n_null, n_train]
    targets = np.column_stack([y, *shuffled])
    probes = fit_ridge_all_layers(x[train][:, None, :], targets, groups)
    return probes[0][0], [p[0] for p in probes[1:]]


def _token_probe(
    loaded, store, fit: SweepFit, layer: int, rng, config: TrajectoryConfig, max_tokens
) -> tuple[Probe, int]:
    train = np.flatnonzero(fit.plan.masks["train"])
    chosen = np.sort(rng.permutation(train)[: config.train_responses])
    rows = fit.target.rows[chosen]
    states, _ = response_token_states(loaded, [store.examples[i].messages for i in rows], layer, max_tokens)
    features, labels, groups = [], [], []
    for kept, tokens in zip(chosen, states):
        pick = rng.permutation(len(tokens))[: config.tokens_per_response]
        features.append(tokens[pick])
        labels.append(np.full(len(pick), fit.target.y[kept]))
        groups.append(np.full(len(pick), fit.target.groups[kept]))
    return RidgeProbe().fit(np.concatenate(features), np.concatenate(labels), np.concatenate(groups)), len(chosen)


def _binned(estimates: list[np.ndarray], axis: str, config: TrajectoryConfig) -> tuple[np.ndarray, list[float]]:
    """[n_responses, n_bins] mean estimate per bin (NaN where a response does not reach the bin), and the bin starts."""
    if axis == "relative":
        bins = config.relative_bins
        out = np.full((len(estimates), bins), np.nan)
        for row, values in enumerate(estimates):
            index = np.minimum(((np.arange(len(values)) + 0.5) / len(values) * bins).astype(int), bins - 1)
            counts = np.bincount(index, minlength=bins)
            out[row] = np.where(counts > 0, np.bincount(index, values, bins) / np.maximum(counts, 1), np.nan)
        return out, [b / bins for b in range(bins)]
    bins = config.max_token_bins
    out = np.full((len(estimates), bins), np.nan)
    for row, values in enumerate(estimates):
        index = np.arange(len(values)) // config.token_bin
        keep = index < bins
        counts = np.bincount(index[keep], minlength=bins)
        # a bin counts only when the response fills it completely (a partial last bin mixes lengths)
        full = counts == config.token_bin
        out[row] = np.where(full, np.bincount(index[keep], values[keep], bins) / np.maximum(counts, 1), np.nan)
    return out, [float(b * config.token_bin) for b in range(bins)]


def _curve(
    name: str,
    axis: str,
    better: list[np.ndarray],
    worse: list[np.ndarray],
    groups: np.ndarray,
    config: TrajectoryConfig,
) -> TrajectoryCurve:
    b, starts = _binned(better, axis, config)
    w, _ = _binned(worse, axis, config)
    difference = b - w  # [pairs, bins], NaN where either response does not reach the bin
    both = np.isfinite(difference)  # the better/worse curves average the same pairs as their difference
    b, w = np.where(both, b, np.nan), np.where(both, w, np.nan)
    bands = _simultaneous_band(difference, config.n_boot, config.seed)
    reach = np.sum(np.isfinite(difference), axis=0)
    separated = [band.low is not None and band.low > 0 for band in bands]
    return TrajectoryCurve(
        probe=name,
        axis=axis,
        bins=starts,
        better=_nanmean(b),
        worse=_nanmean(w),
        difference=bands,
        pairs=[int(r) for r in reach],
        separates_from=_sustained_start(separated, starts, reach),
    )


def _nanmean(values: np.ndarray) -> list[float | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins are expected: no pair reaches them
        means = np.nanmean(values, axis=0)
    return [None if not np.isfinite(m) else float(m) for m in means]


def _simultaneous_band(difference: np.ndarray, n_boot: int, seed: int, min_pairs: int = 5) -> list[Interval]:
    """Mean paired difference per bin with a 95% band that holds for all bins at once (max-|t| over a
    bootstrap of pairs, i.e. of prompts). Bins reached by fewer than `min_pairs` pairs get no band."""
    reach = np.sum(np.isfinite(difference), axis=0)
    usable = reach >= min_pairs
    means = np.array(_nanmean(difference), dtype=float)
    if not usable.any():
        return [Interval.of(m) for m in means]
    weights = Resampler.make(np.arange(len(difference)), n_boot, seed).weights  # one pair per prompt: pairs resampled
    reached = np.isfinite(difference)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = (weights @ np.where(reached, difference, 0)) / (weights @ reached)  # [n_boot, bins], reached pairs
        spread = np.nanstd(boot, axis=0)
        t = np.abs(boot[:, usable] - means[usable]) / np.where(spread[usable] > 0, spread[usable], np.inf)
        critical = float(np.quantile(np.nanmax(t, axis=1), 0.95))
    return [
        Interval.of(m, m - critical * s, m + critical * s) if ok else Interval.of(m)
        for m, s, ok in zip(means, spread, usable)
    ]


def _sustained_start(separated: list[bool], starts: list[float], reach: np.ndarray, min_pairs: int = 5) -> float | None:
    """The first bin from which every later bin (with enough pairs) stays separated."""
    usable = [i for i in range(len(separated)) if reach[i] >= min_pairs]
    for position, i in enumerate(usable):
        if all(separated[j] for j in usable[position:]):
            return starts[i]
    return None


def _shuffled_probe_null(
    probe: RidgeProbe,
    null_probes: list[RidgeProbe],
    better: list[np.ndarray],
    worse: list[np.ndarray],
    config: TrajectoryConfig,
) -> NullTest:
    """The end-of-response probe's paired difference averaged over tokens (better minus worse), in units of the sd of
    its estimates over all test tokens so probes of different scale compare, against the probes fitted on
    within-prompt-shuffled ratings."""
    tokens = np.concatenate(better + worse)

    def standardized_difference(candidate: RidgeProbe) -> float:
        scale = float(np.std(candidate.predict(tokens))) or 1.0
        per_pair = [np.mean(candidate.predict(b)) - np.mean(candidate.predict(w)) for b, w in zip(better, worse)]
        return float(np.mean(per_pair)) / scale

    null = np.array([standardized_difference(p) for p in null_probes])
    return null_test("mean difference, better - worse (sd of estimates)", standardized_difference(probe), null)


def _lens(
    loaded, rendered, estimates: list[np.ndarray], ratings: np.ndarray, ids: list[str], per_kind: int = 2
) -> list[LensItem]:
    """Two high-rated, two low-rated and two surprising responses (largest gap between final estimate and rating)."""
    finals = np.array([e[-1] for e in estimates])
    order = np.argsort(ratings)
    z = (finals - finals.mean()) / (finals.std() or 1) - (ratings - ratings.mean()) / (ratings.std() or 1)
    chosen: list[tuple[str, int]] = []
    for kind, candidates in (("high", order[::-1]), ("low", order), ("surprising", np.argsort(-np.abs(z)))):
        picked = [int(i) for i in candidates if int(i) not in {c[1] for c in chosen}][:per_kind]
        chosen += [(kind, i) for i in picked]
    items = []
    for kind, i in chosen:
        spans = rendered[i].spans
        token_ids = rendered[i].input_ids[spans.response_start : spans.response_end]
        items.append(
            LensItem(
                kind=kind,
                id=ids[i],
                rating=float(ratings[i]),
                tokens=[loaded.tokenizer.decode([t]) for t in token_ids],
                estimates=[float(v) for v in estimates[i]],
            )
        )
    return items
