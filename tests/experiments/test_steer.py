"""Steering on the tiny model: directions, units, conditions, scorers and the result folder."""

import numpy as np
import pandas as pd
import pytest

from helpers import cli, synthetic_examples
from latent_reward.activations import ExtractConfig, extract
from latent_reward.errors import UserError
from latent_reward.evaluation.metrics import Resampler
from latent_reward.experiments.steer import CIRCULAR, SteerConfig, _rank_p, _versus_draws, conditions, direction_vectors, effects, steer_layers
from latent_reward.experiments.sweep import SweepConfig, sweep
from latent_reward.probes import Probe
from latent_reward.workflows.steer import SteerJob, run_steer


@pytest.fixture(scope="module")
def probe_folder(tiny, tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("steer")
    store = extract(tiny, synthetic_examples(n_prompts=30, per_prompt=3), folder / "store", ExtractConfig(), progress=False).store
    probe = sweep(store, SweepConfig(n_boot=100), progress=False).best_probe
    probe.info["model"] = str(tiny_model_dir)
    store.manifest["model"]["name"] = str(tiny_model_dir)
    import json

    manifest = json.loads((folder / "store" / "manifest.json").read_text())
    manifest["model"]["name"] = str(tiny_model_dir)
    (folder / "store" / "manifest.json").write_text(json.dumps(manifest))
    return probe.save(folder / "probe")


def test_directions_share_one_norm_unit_and_the_orthogonal_control_is_orthogonal(probe_folder):
    from latent_reward.activations.store import ActivationStore

    probe = Probe.load(probe_folder)
    store = ActivationStore.open(probe.info["store"])
    vectors, sd = direction_vectors(store, probe, int(probe.info["layer"]), ("probe", "mean_diff", "random", "orthogonal"), 0, draws=3)
    assert set(vectors) == {"probe", "mean_diff", "random 1", "random 2", "random 3", "orthogonal 1", "orthogonal 2", "orthogonal 3"}
    for vector in vectors.values():
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(vectors["probe"], probe.direction / np.linalg.norm(probe.direction), atol=1e-5)
    assert abs(vectors["orthogonal 2"] @ vectors["probe"]) < 1e-5 and sd > 0
    assert abs(vectors["random 1"] @ vectors["random 2"]) < 0.9  # distinct draws
    x = store.array(probe.info["position"], [int(probe.info["layer"])])[:, 0].astype(np.float64)
    assert sd == pytest.approx(np.std(x @ vectors["probe"]), rel=1e-3)
    # independently of the probe's fields: a linear probe's direction is the gradient of its predictions (one unit
    # step along each axis), and the strength unit is the sd of its predictions over the stored states divided by
    # that gradient's norm (the prediction moves by |gradient| per unit step along the direction)
    d = x.shape[1]
    gradient = probe.predict(np.eye(d)) - probe.predict(np.zeros((1, d)))
    np.testing.assert_allclose(vectors["probe"], gradient / np.linalg.norm(gradient), atol=1e-5)
    assert sd == pytest.approx(np.std(probe.predict(x)) / np.linalg.norm(gradient), rel=1e-4)
    # each orthogonal control is its random draw with the probe component removed: in their plane, on the draw's side
    for k in (1, 2, 3):
        plane = np.column_stack([vectors["probe"], vectors[f"random {k}"]]).astype(np.float64)
        coef, *_ = np.linalg.lstsq(plane, vectors[f"orthogonal {k}"].astype(np.float64), rcond=None)
        assert np.linalg.norm(plane @ coef - vectors[f"orthogonal {k}"]) < 1e-5 and coef[1] > 0
    config = SteerConfig(strengths=(-2.0, -1.0, 0.0, 3.0), directions=("probe", "random"), ablate=True)
    layer = int(probe.info["layer"])
    listed = conditions(config, [layer], {layer: {k: vectors[k] for k in ("probe", "random 1", "random 2")}}, {layer: sd})
    # unsteered once, no strength-0 duplicates, random draws at the primary (strongest positive) strength only, one ablation
    assert listed[0][1] == "none" and len(listed) == 1 + 3 + 2 + 1
    assert {s for _, label, s, _ in listed if label.startswith("random")} == {3.0}
    for _, kind, strength, intervention in listed[1:]:
        if intervention.kind == "add":  # exactly strength x sd x unit direction; random has the probe's norm
            np.testing.assert_allclose(intervention.vector, strength * sd * vectors[kind], rtol=1e-5)
            assert np.linalg.norm(intervention.vector) == pytest.approx(abs(strength) * sd, rel=1e-4)


def test_steer_writes_every_reply_and_keeps_the_circular_reading_out_of_the_scorers(probe_folder, tmp_path):
    job = SteerJob(probe=probe_folder, config=SteerConfig(layers=(1, 2), strengths=(-4.0, 0.0, 4.0), prompts=3, max_new_tokens=5,
                                                      random_directions=2, n_boot=100), out=tmp_path / "steer")
    result = run_steer(job, progress=False)
    assert CIRCULAR not in result.scorers and {"TF-IDF response", "response length"} <= set(result.scorers)
    frame = pd.read_csv(job.out / "steer.csv")
    assert len(frame) == 3 * (1 + 2 * (2 + 2))  # prompts x (unsteered + layers x (probe x 2 strengths + 2 draws at +4))
    base = frame[frame.direction == "none"]
    assert (base.kl == 0).all() and base.nll.notna().all()
    assert (frame[frame.direction != "none"].kl >= 0).all()
    effects = [e for e in result.effects if e.scorer == "response length" and e.direction == "probe" and e.layer == 1]
    assert {e.strength for e in effects} == {-4.0, 4.0}
    primary = next(e for e in effects if e.strength == 4.0)
    assert primary.versus_random is not None and primary.random_rank_p in (1 / 3, 2 / 3, 1.0)
    # the exact values from steer.csv: per prompt, the steered reply's length minus the unsteered one's, averaged. Every
    # reply of the tiny model here runs to the 5-token cap, so each change is 0 and the ties give rank p (1 + 2) / 3;
    # test_effects_rank_the_primary_direction_among_its_draws checks a case where the draws differ
    steered = frame[(frame.layer == 1) & (frame.strength == 4.0)]

    def change(label):
        rows = steered[steered.direction == label].groupby("prompt")["response length"].mean()
        return float((rows - base.groupby("prompt")["response length"].mean().loc[rows.index]).mean())

    draws = [change("random 1"), change("random 2")]
    assert primary.change.value == pytest.approx(change("probe"), abs=1e-9)
    assert primary.random_rank_p == pytest.approx((1 + sum(d >= change("probe") for d in draws)) / 3)
    assert next(e for e in effects if e.strength == -4.0).versus_random is None  # no random draws there
    random = [e for e in result.effects if e.scorer == "response length" and e.direction == "random" and e.layer == 1]
    assert len(random) == 1 and len(random[0].draws) == 2
    assert random[0].draws == pytest.approx(draws, abs=1e-9)
    assert (job.out / "steer.html").exists() and (job.out / "results.json").exists()
    with pytest.raises(UserError, match="out of range"):
        steer_layers(Probe.load(probe_folder), 3, SteerConfig(layers=(7,)))


def test_steer_cli_rejects_bad_strengths(probe_folder, tmp_path):
    result = cli("steer", "--probe", probe_folder, "--out", tmp_path / "o", "--strengths", "1,two")
    assert result.returncode == 2 and "comma-separated numbers" in result.stderr


def test_random_rank_p_counts_draws_moving_at_least_as_far_in_the_strengths_direction():
    assert _rank_p(0.5, [0.1, 0.2, 0.6], 4.0) == pytest.approx(2 / 4)
    assert _rank_p(-0.5, [0.1, -0.6, -0.7], -4.0) == pytest.approx(3 / 4)
    assert _rank_p(0.5, [0.1, -0.6], 0.0) is None  # no push, no direction to rank in
    assert _rank_p(float("nan"), [0.1], 4.0) is None


def test_effects_compare_a_direction_with_the_mean_of_the_random_draws_paired_on_prompts():
    rows = [{"layer": None, "direction": "none", "strength": 0.0, "prompt": p, "score": 0.0} for p in range(4)]
    rows += [{"layer": 3, "direction": "probe", "strength": 2.0, "prompt": p, "score": 1.0 + p} for p in range(4)]
    rows += [{"layer": 3, "direction": f"random {d}", "strength": 2.0, "prompt": p, "score": float(d)} for d in (1, 2) for p in range(4)]
    found = effects(pd.DataFrame(rows), ["score"], [3], SteerConfig(n_boot=50))
    probe = next(e for e in found if e.direction == "probe")
    random = next(e for e in found if e.direction == "random")
    assert probe.change.value == pytest.approx(2.5) and probe.versus_random.value == pytest.approx(1.0)
    assert random.draws == [1.0, 2.0] and random.change.value == pytest.approx(1.5)
    assert probe.random_rank_p == pytest.approx(1 / 3)


def test_the_comparison_with_random_directions_counts_their_spread_not_only_the_prompts():
    rng = np.random.default_rng(0)
    values = 1.0 + 0.01 * rng.normal(size=40)  # the steered direction: +1 on every prompt, little prompt noise
    resampler = Resampler.make(np.arange(40).astype(str), 500, 0)
    alike = np.zeros((8, 40))  # eight random directions that all do nothing
    scattered = rng.normal(0, 2.0, size=(8, 1)) + np.zeros((8, 40))  # eight that disagree with each other a lot
    tight, wide = _versus_draws(values, alike, resampler, 0), _versus_draws(values, scattered, resampler, 0)
    assert tight.high - tight.low < 0.02
    assert wide.high - wide.low > 1.0  # resampling draws: 8 draws of sd 2 leave the random mean uncertain by ~0.7


def test_the_second_default_layer_is_a_third_of_the_depth_from_the_probes(probe_folder):
    probe = Probe.load(probe_folder)
    own = int(probe.info["layer"])
    layers = steer_layers(probe, 30, SteerConfig())
    assert own in layers and len(layers) == 2 and abs(layers[0] - layers[1]) == 10


def test_effects_rank_the_primary_direction_among_its_draws():
    """Four prompts; per-prompt changes from unsteered: probe +1.5 on average, the three draws +0.5, +2.0 and -1.0 (and
    at the opposite strength the ranking runs the other way)."""
    base = [0.0, 1.0, 2.0, 3.0]
    rows = [{"layer": None, "direction": "none", "strength": 0.0, "prompt": p, "score": base[p]} for p in range(4)]
    shifts = {"probe": [1.0, 2.0, 1.0, 2.0], "random 1": [0.5] * 4, "random 2": [2.0] * 4, "random 3": [-1.0, -1.0, -1.0, -1.0]}
    for strength, sign in ((3.0, 1.0), (-3.0, -1.0)):
        for label, shift in shifts.items():
            rows += [{"layer": 2, "direction": label, "strength": strength, "prompt": p, "score": base[p] + sign * shift[p]}
                     for p in range(4)]
    found = effects(pd.DataFrame(rows), ["score"], [2], SteerConfig(n_boot=50))
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


def test_distinct_2_degenerate_and_the_primary_strength_by_hand():
    from latent_reward.experiments.steer import degenerate, distinct_2, primary_strength

    assert distinct_2([1, 2, 1, 2]) == pytest.approx(2 / 3)  # bigrams (1,2) (2,1) (1,2)
    assert distinct_2([5, 6, 7]) == 1.0 and distinct_2([5]) == 1.0
    assert degenerate([])
    assert degenerate([1, 2, 3, 4] * 3 + list(range(10, 30)))  # one 4-gram three times (24 of 31 bigrams distinct)
    assert not degenerate([1, 2, 3, 4] * 2 + [9])  # twice only, and 5 of 8 bigrams distinct
    assert degenerate([1, 2, 1, 2, 1, 2, 1])  # no 4-gram three times, but 2 of 6 bigrams distinct (< 0.5)
    assert not degenerate([1, 1, 1, 1, 2])  # 2 of 4 bigrams distinct: exactly 0.5 is not below it
    assert primary_strength([-8.0, 2.0, 4.0, -1.0]) == 4.0 and primary_strength([-8.0, -1.0]) == -8.0
