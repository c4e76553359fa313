"""Steering on the tiny model: directions, units, conditions, scorers and the result folder."""

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli, synthetic_examples
from latent_reward.activations import ExtractConfig, extract
from latent_reward.errors import UserError
from latent_reward.experiments.steer import CIRCULAR, SteerConfig, conditions, direction_vectors, steer_layers
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
    vectors, sd = direction_vectors(store, probe, int(probe.info["layer"]), ("probe", "mean_diff", "random", "orthogonal"), 0)
    for vector in vectors.values():
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(vectors["probe"], probe.direction / np.linalg.norm(probe.direction), atol=1e-5)
    assert abs(vectors["orthogonal"] @ vectors["probe"]) < 1e-5 and sd > 0
    x = store.array(probe.info["position"], [int(probe.info["layer"])])[:, 0].astype(np.float64)
    assert sd == pytest.approx(np.std(x @ vectors["probe"]), rel=1e-3)
    config = SteerConfig(strengths=(-2.0, 0.0, 3.0), directions=("probe", "random"), ablate=True)
    layer = int(probe.info["layer"])
    listed = conditions(config, [layer], {layer: {k: vectors[k] for k in ("probe", "random")}}, {layer: sd})
    assert listed[0][1] == "none" and len(listed) == 1 + 2 * 2 + 1  # unsteered once, no strength-0 duplicates, one ablation
    for _, kind, strength, intervention in listed[1:]:
        if intervention.kind == "add":  # exactly strength x sd x unit direction; random has the probe's norm
            np.testing.assert_allclose(intervention.vector, strength * sd * vectors[kind], rtol=1e-5)
            assert np.linalg.norm(intervention.vector) == pytest.approx(abs(strength) * sd, rel=1e-4)


def test_steer_writes_every_reply_and_keeps_the_circular_reading_out_of_the_scorers(probe_folder, tmp_path):
    job = SteerJob(probe=probe_folder, config=SteerConfig(layers=(1, 2), strengths=(-4.0, 0.0, 4.0), prompts=3, max_new_tokens=5,
                                                      n_boot=100), out=tmp_path / "steer")
    result = run_steer(job, progress=False)
    assert CIRCULAR not in result.scorers and {"TF-IDF response", "response length"} <= set(result.scorers)
    frame = pd.read_csv(job.out / "steer.csv")
    assert len(frame) == 3 * (1 + 2 * 2 * 2)  # prompts x (unsteered + layers x directions x nonzero strengths)
    base = frame[frame.direction == "none"]
    assert (base.kl == 0).all() and base.nll.notna().all()
    assert (frame[frame.direction != "none"].kl >= 0).all()
    effects = [e for e in result.effects if e.scorer == "response length" and e.direction == "probe" and e.layer == 1]
    assert {e.strength for e in effects} == {-4.0, 4.0} and all(e.versus_random is not None for e in effects)
    assert (job.out / "steer.html").exists() and (job.out / "results.json").exists()
    with pytest.raises(UserError, match="out of range"):
        steer_layers(Probe.load(probe_folder), 3, SteerConfig(layers=(7,)))


def test_steer_cli_rejects_bad_strengths(probe_folder, tmp_path):
    result = run_cli("steer", "--probe", probe_folder, "--out", tmp_path / "o", "--strengths", "1,two")
    assert result.returncode == 2 and "comma-separated numbers" in result.stderr
