"""Steering on the tiny model: directions against closed forms, doses, conditions, scorers, the primary contrast on
planted effects, and the result folder."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import Ridge

from helpers import cli, synthetic_examples
from latent_reward.activations import ExtractConfig, extract
from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.sweep import SweepConfig, sweep
from latent_reward.errors import UserError
from latent_reward.evaluation.results import Interval
from latent_reward.experiments.steer import (
    CIRCULAR,
    Effect,
    PrimaryContrast,
    SteerConfig,
    SteerResult,
    _rank_p,
    adjust_secondary,
    conditions,
    degenerate,
    detectable_by_rank,
    direction_vectors,
    distinct_2,
    effects,
    primary_contrast,
    primary_strength,
    steer_layers,
)
from latent_reward.experiments.steer_scoring import Scoring, _with_empty, prefixes
from latent_reward.probes import Probe, RidgeProbe
from latent_reward.report.steer import answer
from latent_reward.workflows.steer import SteerJob, run_steer


@pytest.fixture(scope="module")
def probe_folder(tiny, tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("steer")
    store = extract(
        tiny, synthetic_examples(n_prompts=30, per_prompt=3), folder / "store", ExtractConfig(), progress=False
    ).store
    probe = sweep(store, SweepConfig(n_boot=100), progress=False).best_probe
    probe.info.model = str(tiny_model_dir)
    manifest = json.loads((folder / "store" / "manifest.json").read_text())
    manifest["model"]["name"] = str(tiny_model_dir)
    (folder / "store" / "manifest.json").write_text(json.dumps(manifest))
    return probe.save(folder / "probe")


def _states(probe, layer):
    """The stored states at the probe's position and `layer`, read straight from the store, with ratings and prompts."""
    store = ActivationStore.open(probe.info.store)
    x = store.array(probe.info.position, [layer])[:, 0].astype(np.float64)
    return x, np.asarray(store.ratings, dtype=np.float64), np.asarray(store.groups)


def test_each_direction_is_a_unit_vector_pushed_by_its_own_projection_sd(probe_folder):
    probe = Probe.load(probe_folder)
    layer = probe.info.layer
    store = ActivationStore.open(probe.info.store)
    vectors, sd = direction_vectors(store, probe, layer, ("probe", "mean_diff", "random", "orthogonal"), 0, draws=3)
    assert (
        set(vectors)
        == set(sd)
        == {"probe", "mean_diff", "random 1", "random 2", "random 3", "orthogonal 1", "orthogonal 2", "orthogonal 3"}
    )
    x, _, _ = _states(probe, layer)
    covariance = np.cov(x, rowvar=False, bias=True)  # the spread along u is sqrt(u' S u): no projection computed
    d = x.shape[1]
    # a linear probe's direction is the gradient of its predictions, read off one unit step along each axis
    gradient = probe.predict(np.eye(d)) - probe.predict(np.zeros((1, d)))
    np.testing.assert_allclose(vectors["probe"], gradient / np.linalg.norm(gradient), atol=1e-5)
    assert sd["probe"] == pytest.approx(np.std(probe.predict(x)) / np.linalg.norm(gradient), rel=1e-4)
    for label, vector in vectors.items():
        u = vector.astype(np.float64)
        assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-5)
        assert sd[label] == pytest.approx(np.sqrt(u @ covariance @ u), rel=1e-4), label
    assert abs(vectors["orthogonal 2"] @ vectors["probe"]) < 1e-5
    assert abs(vectors["random 1"] @ vectors["random 2"]) < 0.9
    for k in (1, 2, 3):  # each orthogonal control is its random draw with the probe component removed
        plane = np.column_stack([vectors["probe"], vectors[f"random {k}"]]).astype(np.float64)
        coef, *_ = np.linalg.lstsq(plane, vectors[f"orthogonal {k}"].astype(np.float64), rcond=None)
        assert np.linalg.norm(plane @ coef - vectors[f"orthogonal {k}"]) < 1e-5 and coef[1] > 0
    config = SteerConfig(strengths=(-2.0, -1.0, 0.0, 3.0), directions=("probe", "random"), ablate=True)
    listed = conditions(
        config, [layer], {layer: {k: vectors[k] for k in ("probe", "random 1", "random 2")}}, {layer: sd}
    )
    # unsteered once, no strength-0 duplicates, random draws at the primary (strongest positive) strength only, one
    # ablation
    assert listed[0][1] == "none" and len(listed) == 1 + 3 + 2 + 1
    assert {s for _, label, s, _ in listed if label.startswith("random")} == {3.0}
    norms = {}
    for _, label, strength, intervention in listed[1:]:
        if intervention.kind == "add":  # s x (the direction's own sd) x its unit vector: the same dose in its own units
            np.testing.assert_allclose(intervention.vector, strength * sd[label] * vectors[label], rtol=1e-5)
            norms[label] = np.linalg.norm(intervention.vector) / abs(strength)
    # the random draws are not simply given the probe's norm (the residual stream's spread differs by direction)
    assert norms["random 1"] != pytest.approx(norms["probe"], rel=1e-3)


def test_mean_difference_and_refit_directions_match_their_closed_forms(probe_folder):
    """At a layer the probe was not fitted at, directions are refitted on the probe's training prompts only: the ridge
    direction equals sklearn's ridge on z-scored states at the recorded penalty, with the scaling undone; the mean
    difference equals (mean of the top third - mean of the bottom third) / variance, per feature."""
    probe = Probe.load(probe_folder)
    layer = next(k for k in (1, 2, 3) if k != probe.info.layer)
    store = ActivationStore.open(probe.info.store)
    vectors, _ = direction_vectors(store, probe, layer, ("probe", "mean_diff"), 0, draws=0)
    x, y, groups = _states(probe, layer)
    train = np.isin(groups, list(probe.info.train_groups))
    assert 0 < train.sum() < len(y)
    xt, yt = x[train], y[train]
    mean, scale = xt.mean(0), xt.std(0)
    factor = RidgeProbe().fit(xt, yt, groups[train]).alpha_factor  # the penalty grouped CV picks (only the penalty)
    coef = Ridge(alpha=factor * train.sum()).fit((xt - mean) / scale, yt).coef_ / scale
    np.testing.assert_allclose(vectors["probe"], coef / np.linalg.norm(coef), atol=2e-4)
    everything = Ridge(alpha=factor * len(y)).fit((x - x.mean(0)) / x.std(0), y).coef_ / x.std(0)
    assert abs(vectors["probe"] @ everything / np.linalg.norm(everything)) < 0.999  # rows outside training would show
    low, high = np.quantile(yt, [1 / 3, 2 / 3])
    raw = (xt[yt >= high].mean(0) - xt[yt <= low].mean(0)) / xt.var(0)
    np.testing.assert_allclose(vectors["mean_diff"], raw / np.linalg.norm(raw), atol=1e-5)


def _frame(base, steered: dict[str, np.ndarray], strength=3.0, layer=2, column="score"):
    rows = [{"layer": None, "direction": "none", "strength": 0.0, "prompt": p, column: v} for p, v in enumerate(base)]
    for label, values in steered.items():
        rows += [
            {"layer": layer, "direction": label, "strength": strength, "prompt": p, column: v}
            for p, v in enumerate(values)
        ]
    return pd.DataFrame(rows)


def test_the_primary_contrast_recovers_a_planted_effect_and_states_what_it_can_detect():
    """20 prompts, 19 random directions each with its own offset, and the probe direction +0.5 above their population.
    The estimate is the closed-form mean difference, its interval covers the truth and excludes 0, and the detectable
    effects are (t_.975 + t_.80, 19 df) x sqrt(var_p(d) / P + var_k(m) / K) and the farthest draw."""
    rng = np.random.default_rng(0)
    prompts, k, truth = 20, 19, 0.5
    base = rng.normal(0, 1, prompts)
    probe = base + truth + rng.normal(0, 0.1, prompts)
    draws = {f"random {j + 1}": base + rng.normal(0, 0.05) + rng.normal(0, 0.1, prompts) for j in range(k)}
    frame = _frame(base, {"probe": probe, **draws})
    config = SteerConfig(n_boot=2000)
    found = effects(frame, ["score"], config)
    scoring = Scoring(names=["score"], primary="score", reason="planted")
    contrast = primary_contrast(frame, found, scoring, 2, 3.0, config)
    matrix = np.stack(list(draws.values()))
    d = probe - matrix.mean(0)
    assert contrast.versus_random.value == pytest.approx(d.mean(), abs=1e-12)
    assert contrast.versus_random.low < truth < contrast.versus_random.high and contrast.versus_random.above(0)
    se = np.sqrt(d.var(ddof=1) / prompts + matrix.mean(1).var(ddof=1) / k)
    quantiles = stats.t.ppf(0.975, 19) + stats.t.ppf(0.8, 19)
    assert contrast.detectable_versus_random == pytest.approx(quantiles * se, rel=1e-9)
    changes = matrix.mean(1) - base.mean()
    assert contrast.detectable_rank == pytest.approx(changes.max(), abs=1e-12)
    assert contrast.rank_p == pytest.approx(1 / 20) and contrast.rank_p_floor == pytest.approx(1 / 20)
    assert contrast.random_draws == 19 and contrast.prompts == 20
    # and with nothing planted (one draw of it: the coverage itself is simulated in tests/evaluation), the interval
    # contains 0 and the rank p is not at its floor
    null = _frame(base, {"probe": base + np.random.default_rng(1).normal(0, 0.1, prompts), **draws})
    quiet = primary_contrast(null, effects(null, ["score"], config), scoring, 2, 3.0, config)
    assert quiet.versus_random.low < 0 < quiet.versus_random.high and quiet.rank_p > 0.1


def test_the_rank_test_needs_enough_draws_to_detect_anything():
    nineteen = list(np.linspace(-1, 1, 19))
    assert detectable_by_rank(nineteen, 4.0) == pytest.approx(1.0)  # beyond every draw for p = 1/20
    assert detectable_by_rank(nineteen, -4.0) == pytest.approx(-1.0)  # the other way for a negative push
    ninety_nine = list(np.arange(99.0))
    assert detectable_by_rank(ninety_nine, 4.0) == pytest.approx(94.0)  # 4 draws may tie or beat it: (1 + 4) / 100
    assert detectable_by_rank(list(np.arange(8.0)), 4.0) is None  # 8 draws: the floor is 1/9 > 0.05


def test_empty_replies_count_as_the_lowest_score_seen():
    answered = np.array([True, False, True, True, False])
    np.testing.assert_array_equal(_with_empty(np.array([3.0, 1.0, 2.0]), answered), [3.0, 1.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(_with_empty(np.array([3.0, np.nan, 2.0]), answered), [3.0, 2.0, np.nan, 2.0, 2.0])
    # counted in the paired change: a condition whose empty replies are dropped would read +1 here, not -0.5
    base = np.array([2.0, 2.0, 2.0, 2.0])
    steered = _with_empty(np.array([3.0, 3.0]), np.array([True, True, False, False]))
    found = effects(_frame(base, {"probe": steered}), ["score"], SteerConfig(n_boot=200))
    assert next(e for e in found if e.direction == "probe").change.value == pytest.approx(((3 + 3 + 3 + 3) / 4) - 2.0)


def test_the_degenerate_and_empty_shares_are_the_shares_of_replies():
    rows = [
        {"layer": None, "direction": "none", "strength": 0.0, "prompt": p, "degenerate": 0.0, "empty": 0.0}
        for p in range(4)
    ]
    flags = [(1.0, 1.0), (0.0, 0.0), (1.0, 0.0), (1.0, 0.0)]
    rows += [
        {"layer": 1, "direction": "probe", "strength": 4.0, "prompt": p, "degenerate": g, "empty": e}
        for p, (g, e) in enumerate(flags)
    ]
    found = effects(pd.DataFrame(rows), ["degenerate", "empty"], SteerConfig(n_boot=200))
    share = {e.scorer: e for e in found if e.direction == "probe"}
    assert share["degenerate"].mean.value == pytest.approx(0.75)
    assert share["degenerate"].change.value == pytest.approx(0.75)
    assert share["empty"].mean.value == pytest.approx(0.25)


def test_prefixes_cut_texts_to_the_replies_token_budget(tiny):
    texts = ["the quick brown fox jumps over the lazy dog " * 5, "short"]
    cut = prefixes(tiny.tokenizer, texts, 6)
    counts = [len(tiny.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in cut]
    assert counts[0] <= 6 and cut[0] and texts[0].startswith(cut[0].strip()[:10])
    assert cut[1] == "short"


@pytest.mark.slow  # end to end: the whole workflow on the tiny model
def test_steer_writes_every_reply_and_keeps_the_circular_reading_out_of_the_scorers(probe_folder, tmp_path):
    job = SteerJob(
        probe=probe_folder,
        config=SteerConfig(
            layers=(1, 2), strengths=(-4.0, 0.0, 4.0), prompts=3, max_new_tokens=5, random_directions=2, n_boot=100
        ),
        out=tmp_path / "steer",
    )
    result = run_steer(job, progress=False).result
    own = Probe.load(probe_folder).info.layer
    primary_layer = own if own in (1, 2) else 1
    assert CIRCULAR not in result.scorers and "response length" in result.scorers
    assert {"TF-IDF response (5-token prefixes)", "length + text statistics (5-token prefixes)"} <= set(result.scorers)
    # the primary scorer: the text scorer with the better validation r (no judge, no other model here)
    assert result.primary.scorer == max(result.scorer_validation, key=result.scorer_validation.get)
    assert result.primary.layer == primary_layer and result.primary.strength == 4.0 and result.primary.random_draws == 2
    assert result.primary.detectable_rank is None  # two draws cannot reach 0.05
    frame = pd.read_csv(job.out / "steer.csv")
    # prompts x (unsteered + 2 layers x probe at 2 strengths + 2 random draws at the primary layer and +4 only)
    assert len(frame) == 3 * (1 + 2 * 2 + 2)
    assert set(frame[frame.direction.str.startswith("random")].layer) == {primary_layer}
    assert (frame["empty"] == (frame.reply.fillna("").str.strip() == "")).all() and frame["empty"].any()
    base = frame[frame.direction == "none"]
    assert (base.kl == 0).all() and base.nll.notna().all()
    assert (frame[frame.direction != "none"].kl >= 0).all()
    found = [
        e
        for e in result.effects
        if e.scorer == "response length" and e.direction == "probe" and e.layer == primary_layer
    ]
    assert {e.strength for e in found} == {-4.0, 4.0}
    primary = next(e for e in found if e.strength == 4.0)
    steered = frame[(frame.layer == primary_layer) & (frame.strength == 4.0)]

    def change(label):  # per prompt, the steered reply's length minus the unsteered one's, averaged
        rows = steered[steered.direction == label].groupby("prompt")["response length"].mean()
        return float((rows - base.groupby("prompt")["response length"].mean().loc[rows.index]).mean())

    draws = [change("random 1"), change("random 2")]
    assert primary.change.value == pytest.approx(change("probe"), abs=1e-9)
    assert primary.random_rank_p == pytest.approx((1 + sum(d >= change("probe") for d in draws)) / 3)
    assert next(e for e in found if e.strength == -4.0).versus_random is None  # no random draws there
    random = [e for e in result.effects if e.scorer == "response length" and e.direction == "random"]
    assert len(random) == 1 and random[0].draws == pytest.approx(draws, abs=1e-9)
    assert (job.out / "steer.html").exists() and (job.out / "results.json").exists()
    with pytest.raises(UserError, match="out of range"):
        steer_layers(Probe.load(probe_folder), 3, SteerConfig(layers=(7,)))


def test_steer_cli_rejects_bad_strengths_and_random_layers(probe_folder, tmp_path):
    result = cli("steer", "--probe", probe_folder, "--out", tmp_path / "o", "--strengths", "1,two")
    assert result.returncode == 2 and "comma-separated numbers" in result.stderr
    result = cli("steer", "--probe", probe_folder, "--out", tmp_path / "o", "--random-layers", "some")
    assert result.returncode == 2 and "'some' is not one of 'primary', 'all'" in result.stderr  # the Literal's choices


def test_random_rank_p_counts_draws_moving_at_least_as_far_in_the_strengths_direction():
    assert _rank_p(0.5, [0.1, 0.2, 0.6], 4.0) == pytest.approx(2 / 4)
    assert _rank_p(-0.5, [0.1, -0.6, -0.7], -4.0) == pytest.approx(3 / 4)
    assert _rank_p(0.5, [0.1, -0.6], 0.0) is None  # no push, no direction to rank in
    assert _rank_p(float("nan"), [0.1], 4.0) is None


def test_effects_compare_a_direction_with_the_mean_of_the_random_draws_paired_on_prompts():
    steered = {"probe": [1.0 + p for p in range(4)], "random 1": [1.0] * 4, "random 2": [2.0] * 4}
    frame = _frame([0.0] * 4, steered, strength=2.0, layer=3)
    found = effects(frame, ["score"], SteerConfig(n_boot=50))
    probe = next(e for e in found if e.direction == "probe")
    random = next(e for e in found if e.direction == "random")
    assert probe.change.value == pytest.approx(2.5) and probe.versus_random.value == pytest.approx(1.0)
    assert random.draws == [1.0, 2.0] and random.change.value == pytest.approx(1.5)
    assert probe.random_rank_p == pytest.approx(1 / 3)


def test_the_comparison_with_random_directions_counts_their_spread_not_only_the_prompts():
    rng = np.random.default_rng(0)
    base = np.zeros(40)
    probe = 1.0 + 0.01 * rng.normal(size=40)  # the steered direction: +1 on every prompt, little prompt noise
    alike = {f"random {j}": np.zeros(40) + 0.001 * rng.normal(size=40) for j in range(8)}  # eight that do nothing
    scattered = {f"random {j}": rng.normal(0, 2.0) + np.zeros(40) for j in range(8)}  # eight that disagree a lot
    config = SteerConfig(n_boot=500)
    tight, wide = (
        next(e for e in effects(_frame(base, {"probe": probe, **draws}), ["score"], config) if e.direction == "probe")
        for draws in (alike, scattered)
    )
    assert tight.versus_random.high - tight.versus_random.low < 0.02
    assert wide.versus_random.high - wide.versus_random.low > 1.0  # 8 draws of sd 2: their mean is uncertain by ~0.7


def test_the_random_kinds_own_change_resamples_directions_as_well_as_prompts():
    rng = np.random.default_rng(1)
    base = np.zeros(40)
    alike = {f"random {j}": 0.5 + 0.01 * rng.normal(size=40) for j in range(8)}  # agree: +0.5 each
    scattered = {f"random {j}": rng.normal(0, 2.0) + np.zeros(40) for j in range(8)}  # disagree, no prompt noise
    config = SteerConfig(n_boot=500)
    tight, wide = (
        next(e for e in effects(_frame(base, draws), ["score"], config) if e.direction == "random")
        for draws in (alike, scattered)
    )
    assert tight.change.value == pytest.approx(0.5, abs=0.01) and tight.change.high - tight.change.low < 0.02
    mean_of_draws = np.mean([v[0] for v in scattered.values()])
    assert wide.change.value == pytest.approx(mean_of_draws)
    assert wide.change.low < mean_of_draws < wide.change.high
    assert wide.change.high - wide.change.low > 1.0  # prompts alone would give a zero-width interval here
    assert wide.mean.high - wide.mean.low > 1.0


def test_the_second_default_layer_is_a_third_of_the_depth_from_the_probes(probe_folder):
    probe = Probe.load(probe_folder)
    own = probe.info.layer
    layers = steer_layers(probe, 30, SteerConfig())
    assert own in layers and len(layers) == 2 and abs(layers[0] - layers[1]) == 10


def test_effects_rank_the_primary_direction_among_its_draws():
    """Four prompts; per-prompt changes from unsteered: probe +1.5 on average, the three draws +0.5, +2.0 and -1.0 (and
    at the opposite strength the ranking runs the other way)."""
    base = [0.0, 1.0, 2.0, 3.0]
    rows = [{"layer": None, "direction": "none", "strength": 0.0, "prompt": p, "score": base[p]} for p in range(4)]
    shifts = {
        "probe": [1.0, 2.0, 1.0, 2.0],
        "random 1": [0.5] * 4,
        "random 2": [2.0] * 4,
        "random 3": [-1.0, -1.0, -1.0, -1.0],
    }
    for strength, sign in ((3.0, 1.0), (-3.0, -1.0)):
        for label, shift in shifts.items():
            rows += [
                {"layer": 2, "direction": label, "strength": strength, "prompt": p, "score": base[p] + sign * shift[p]}
                for p in range(4)
            ]
    found = effects(pd.DataFrame(rows), ["score"], SteerConfig(n_boot=50))
    up = next(e for e in found if e.direction == "probe" and e.strength == 3.0)
    down = next(e for e in found if e.direction == "probe" and e.strength == -3.0)
    assert up.change.value == pytest.approx(1.5) and down.change.value == pytest.approx(-1.5)
    # draws at +3 moved it by 0.5, 2.0, -1.0: one (2.0) at least as far as the probe's 1.5 -> (1 + 1) / 4
    assert up.random_rank_p == pytest.approx(2 / 4)
    # at -3 the draws moved it by -0.5, -2.0, +1.0: one at least as far down as -1.5 -> (1 + 1) / 4
    assert down.random_rank_p == pytest.approx(2 / 4)
    assert up.versus_random.value == pytest.approx(1.5 - (0.5 + 2.0 - 1.0) / 3)
    random = next(e for e in found if e.direction == "random" and e.strength == 3.0)
    assert random.draws == pytest.approx([0.5, 2.0, -1.0])


def test_secondary_contrasts_get_holm_adjusted_rank_p_and_the_primary_does_not():
    def effect(scorer, layer, p):
        return Effect(
            scorer=scorer,
            layer=layer,
            direction="probe",
            strength=8.0,
            mean=Interval(),
            change=Interval(),
            random_rank_p=p,
            wrong_way=None,
        )

    found = [effect("a", 2, 0.05), effect("b", 2, 0.10), effect("a", 1, 0.05), effect("c", 2, 0.30)]
    primary = PrimaryContrast(scorer="a", scorer_reason="", layer=2, strength=8.0, prompts=20, change=Interval())
    adjust_secondary(found, ["a", "b"], primary)
    assert found[0].rank_p_holm is None and found[3].rank_p_holm is None  # the primary; a scorer not in the family
    assert found[2].rank_p_holm == pytest.approx(2 * 0.05) and found[1].rank_p_holm == pytest.approx(0.10)


def test_the_answer_prints_a_rank_p_at_its_floor_as_a_bound_and_what_the_run_can_detect():
    change = Interval.of(0.3, 0.1, 0.5)
    effects_ = [
        Effect(
            scorer="s",
            layer=2,
            direction="probe",
            strength=8.0,
            mean=change,
            change=change,
            versus_random=Interval.of(0.2, 0.05, 0.35),
            random_rank_p=0.05,
            wrong_way=0.1,
        ),
        Effect(
            scorer="s",
            layer=2,
            direction="random",
            strength=8.0,
            mean=change,
            change=change,
            draws=[0.01] * 19,
            wrong_way=0.5,
        ),
    ]
    primary = PrimaryContrast(
        scorer="s",
        scorer_reason="planted",
        layer=2,
        strength=8.0,
        prompts=20,
        change=change,
        versus_random=Interval.of(0.2, 0.05, 0.35),
        random_draws=19,
        rank_p=0.05,
        rank_p_floor=0.05,
        detectable_versus_random=0.21,
        detectable_rank=0.01,
    )
    result = SteerResult(
        probe={"layer": 2},
        layers=[2],
        sd={2: {"probe": 1.0}},
        directions=["probe", "random"],
        strengths=[8.0],
        scorers=["s"],
        primary=primary,
        coherence=[],
        prompts=20,
        samples=1,
        effects=effects_,
        examples=[],
    )
    text = answer(result)
    assert "rank p <= 0.050 among 19 random directions" in text and "1/20 = 0.050" in text
    assert "0.210 (80% power" in text and "beyond +0.010" in text and "raised the primary scorer" in text
    assert "can hardly tell" not in text
    weak = result.model_copy(update={"scorer_validation": {"s": 0.04}})
    assert "validation r on text this long is only 0.040" in answer(weak)


def test_the_answer_says_when_holm_over_the_secondaries_cannot_reach_005_with_this_many_draws():
    def effect(scorer, layer, holm_p=None):
        change = Interval.of(0.3, 0.1, 0.5)
        return Effect(
            scorer=scorer, layer=layer, direction="probe", strength=8.0, mean=change, change=change,
            random_rank_p=0.05, rank_p_holm=holm_p, wrong_way=0.1,
        )  # fmt: skip

    def page(draws):
        primary = PrimaryContrast(
            scorer="s", scorer_reason="planted", layer=2, strength=8.0, prompts=20, change=Interval.of(0.3, 0.1, 0.5),
            random_draws=draws, rank_p=0.05, rank_p_floor=1 / (draws + 1),
        )  # fmt: skip
        result = SteerResult(
            probe={"layer": 2}, layers=[1, 2], sd={2: {"probe": 1.0}}, directions=["probe", "random"],
            strengths=[8.0], scorers=["s", "t"], primary=primary, coherence=[], prompts=20, samples=1,
            effects=[effect("s", 2), effect("t", 2, 0.1), effect("s", 1, 0.1)], examples=[],
        )  # fmt: skip
        return answer(result)

    assert "smallest possible Holm-adjusted p is 0.100" in page(19)  # 2 secondaries x 1/20
    assert "--random-directions 39 would allow it" in page(19)  # 2 / (39 + 1) = 0.05
    assert "Holm-adjusted p is" not in page(99)  # 2 / 100 = 0.02 can reach 0.05


def test_distinct_2_degenerate_and_the_primary_strength_by_hand():
    assert distinct_2([1, 2, 1, 2]) == pytest.approx(2 / 3)  # bigrams (1,2) (2,1) (1,2)
    assert distinct_2([5, 6, 7]) == 1.0 and distinct_2([5]) == 1.0
    assert degenerate([])
    assert degenerate([1, 2, 3, 4] * 3 + list(range(10, 30)))  # one 4-gram three times (24 of 31 bigrams distinct)
    assert not degenerate([1, 2, 3, 4] * 2 + [9])  # twice only, and 5 of 8 bigrams distinct
    assert degenerate([1, 2, 1, 2, 1, 2, 1])  # no 4-gram three times, but 2 of 6 bigrams distinct (< 0.5)
    assert not degenerate([1, 1, 1, 1, 2])  # 2 of 4 bigrams distinct: exactly 0.5 is not below it
    assert primary_strength([-8.0, 2.0, 4.0, -1.0]) == 4.0 and primary_strength([-8.0, -1.0]) == -8.0
