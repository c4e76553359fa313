import json
import re

import numpy as np
import pytest

from latent_reward.activations.store import write_store
from latent_reward.experiments.pipeline import ReportInputs, report_from_stores
from latent_reward.experiments.sweep import SweepOptions, sweep
from latent_reward.probes import Probe
from test_extract import run_cli


def planted_store(folder, n_groups=60, per_group=4, d=16, seed=0, signal_layer=2, prompt_signal=0.0, response_signal=1.0):
    """Two positions x 4 layers; the rating is linear in eot's layer `signal_layer` (plus an optional prompt-level term
    that also shows at assistant_start, the same for every response to a prompt)."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    group_index = np.repeat(np.arange(n_groups), per_group)
    prompt_value = rng.normal(size=n_groups)[group_index]
    response_value = rng.normal(size=n)
    rating = response_signal * response_value + prompt_signal * prompt_value + 0.1 * rng.normal(size=n)
    states = {name: rng.normal(size=(n, 4, d)) for name in ("assistant_start", "eot")}
    direction = rng.normal(size=d)
    states["eot"][:, signal_layer] += np.outer(response_value, direction)
    states["assistant_start"][:, signal_layer] += np.outer(prompt_value, direction)
    examples = [{"id": f"x{i}", "group": f"g{group_index[i]}", "rating": float(rating[i]), "aspects": {},
                 "meta": {"generator": f"m{i % per_group}"},
                 "messages": [{"role": "user", "content": f"prompt {group_index[i]} " + "word " * int(rng.integers(1, 9))},
                              {"role": "assistant", "content": "answer " * int(rng.integers(1, 30))}]} for i in range(n)]
    stats = {"response_tokens_count": np.array([len(e["messages"][1]["content"].split()) for e in examples], dtype=np.int64),
             "n_tokens": np.full(n, 50, dtype=np.int64)}
    return write_store(folder, states, examples, [0, 1, 2, 3], {"model": {"name": "planted", "n_layers": 3}}, stats)


def test_sweep_finds_the_planted_cell_and_the_control_collapses(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=150)
    result = sweep(store, SweepOptions(n_boot=300), progress=False)
    best = result.best
    assert (best["position"], best["layer"], best["probe"]) == ("eot", 2, "ridge")
    assert best["test"]["pearson"] > 0.9 and best["test"]["within_acc"] > 0.85
    assert best["test_ci"]["pearson"]["low"] > 0.8
    assert abs(best["control_test_pearson"]) < 0.2 and abs(best["control_test_within_acc"] - 0.5) < 0.1
    groups_by_split = {name: set(result.groups[mask]) for name, mask in result.masks.items()}
    assert not (groups_by_split["train"] & groups_by_split["test"]) and not (groups_by_split["val"] & groups_by_split["test"])
    noise_cells = result.table[(result.table.position == "eot") & (result.table.layer != 2)]
    assert noise_cells["test_pearson"].abs().max() < 0.35
    assert set(result.curves.columns) >= {"pearson", "pearson_low", "pearson_high", "within_acc"}


def test_prompt_level_signal_gives_global_r_but_no_within_prompt_accuracy(tmp_path):
    store = planted_store(tmp_path / "s", response_signal=0.0, prompt_signal=1.0)
    result = sweep(store, SweepOptions(n_boot=200, positions=("assistant_start",)), progress=False)
    row = result.table[(result.table.layer == 2)].iloc[0]
    assert row["test_pearson"] > 0.8
    assert abs(row["test_within_acc"] - 0.5) < 0.12


def test_other_probe_kinds_run_in_the_sweep(tmp_path):
    store = planted_store(tmp_path / "s", n_groups=40)
    options = SweepOptions(probes=("ridge", "mean_diff", "pairwise"), positions=("eot",), n_boot=200, control=False)
    table = sweep(store, options, progress=False).table
    at_signal = table[table.layer == 2].set_index("probe")["test_pearson"]
    assert (at_signal > 0.8).all(), at_signal


def test_report_is_self_contained_and_answers_first(tmp_path):
    store = planted_store(tmp_path / "s")
    random_store = planted_store(tmp_path / "r", seed=5, response_signal=0.0)
    html, readout = report_from_stores(ReportInputs(store, random_store, SweepOptions(n_boot=200)), tmp_path / "report",
                                       {"command": "test"}, progress=False)
    text = html.read_text()
    assert text.index("Answers") < text.index("Where: layers x positions")
    assert len(re.findall(r'src="data:image/png;base64,', text)) >= 7
    assert not re.search(r'(src|href)="https?://', text)
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["answers"][0]["question"].startswith("Does planted encode")
    assert results["best"]["layer"] == 2
    assert "random-init model" in results["comparisons"] and "TF-IDF response" in results["comparisons"]
    assert results["comparisons"]["random-init model"]["test"]["pearson"] < 0.4
    for name in ("sweep.csv", "comparisons.csv", "layer_curves.csv", "scatter.png", "heatmap_pearson.png"):
        assert (tmp_path / "report" / name).exists()


def test_sweep_command_saves_a_reloadable_probe(tmp_path):
    store = planted_store(tmp_path / "s")
    result = run_cli("sweep", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "out"), "--n-boot", "200", "--no-sgd-grid")
    assert result.returncode == 0, result.stderr
    assert "best cell: ridge @ eot layer 2" in result.stdout.replace("\n", " ")
    probe = Probe.load(tmp_path / "out" / "best_probe")
    assert probe.info["position"] == "eot" and probe.info["layer"] == 2
    x = store.array("eot", layers=[2])[:, 0].astype(np.float32)
    assert np.corrcoef(probe.predict(x), store.ratings)[0, 1] > 0.9


def test_sweep_rejects_unknown_probe_and_target(tmp_path):
    planted_store(tmp_path / "s")
    result = run_cli("sweep", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--probes", "forest")
    assert result.returncode == 2 and "unknown probe" in result.stderr
    result = run_cli("sweep", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--target", "honesty")
    assert result.returncode == 2 and "unknown target" in result.stderr
