import json

import numpy as np
import pytest
import torch

from conftest import synthetic_examples, write_jsonl
from latent_reward.activations import ExtractConfig, extract
from latent_reward.activations.store import write_store
from latent_reward.experiments.compare import compare_runs
from latent_reward.experiments.generate import generate_with_estimates
from latent_reward.experiments.pipeline import ReportInputs, report_from_stores
from latent_reward.experiments.reward_model import best_of_n, implicit_reward, pair_accuracy
from latent_reward.experiments.sweep import SweepOptions, sweep
from latent_reward.experiments.trajectory import reward_trajectories
from latent_reward.probes import RidgeProbe
from test_extract import run_cli
from test_sweep import planted_store


@pytest.fixture(scope="module")
def tiny_store(tiny, tmp_path_factory):
    examples = synthetic_examples(n_prompts=12, per_prompt=3)
    folder = tmp_path_factory.mktemp("tiny-store")
    return extract(tiny, examples, folder, ExtractConfig(), progress=False).store


def test_trajectory_estimates_end_where_the_response_probe_reads(tiny, tiny_store):
    result = sweep(tiny_store, SweepOptions(n_boot=100, control=False), progress=False)
    trajectory = reward_trajectories(tiny, tiny_store, result, n_test=20, n_train=20, bins=5)
    assert set(trajectory.curves.probe) == {"end-of-response probe", "all-token probe"}
    assert len(trajectory.curves) == 2 * 2 * 5
    assert len(trajectory.lens) == 6
    by_id = {e["id"]: e for e in tiny_store.examples}
    x = tiny_store.array("response_last", layers=[trajectory.layer])[:, 0].astype(np.float32)
    train = result.masks["train"]
    end_probe = RidgeProbe().fit(x[result.keep][train], result.y[train], result.groups[train])
    for item in trajectory.lens:
        example = by_id[item["id"]]
        assert "".join(item["tokens"]).strip() == example["messages"][-1]["content"]
        assert len(item["tokens"]) == len(item["estimates"])
        row = tiny_store.ids.index(item["id"])
        # the estimate at the last response token is the response-level probe's reading of response_last
        assert item["estimates"][-1] == pytest.approx(end_probe.predict(x[row : row + 1])[0], rel=1e-2, abs=1e-2)


def test_generated_estimates_match_a_direct_forward(tiny):
    rng = np.random.default_rng(0)
    probe = RidgeProbe(alpha_factor=1.0).fit(rng.normal(size=(40, 32)), rng.normal(size=40))
    probe.info.update(layer=2, position="response_last")
    messages = [{"role": "user", "content": "what is two plus two?"}]
    reply = generate_with_estimates(tiny, probe, messages, max_new_tokens=6)
    assert 1 <= len(reply.ids) == len(reply.tokens) == len(reply.estimates) <= 6
    prompt_ids = tiny.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        out = tiny.model(torch.tensor([prompt_ids + reply.ids]), output_hidden_states=True)
    direct = probe.predict(out.hidden_states[2][0, len(prompt_ids) - 1 :].numpy())
    assert reply.before == pytest.approx(direct[0], rel=1e-4, abs=1e-4)
    np.testing.assert_allclose(reply.estimates, direct[1 : len(reply.estimates) + 1], rtol=1e-4, atol=1e-4)
    # greedy: each generated token is the argmax of the logits before it
    assert reply.ids == out.logits[0, len(prompt_ids) - 1 : -1].argmax(-1).tolist()


def make_scored_store(folder, ratings, groups, meta):
    examples = [{"id": f"e{i}", "group": g, "rating": float(r), "aspects": {}, "meta": m,
                 "messages": [{"role": "user", "content": g}, {"role": "assistant", "content": "x"}]}
                for i, (r, g, m) in enumerate(zip(ratings, groups, meta))]
    return write_store(folder, {"eot": np.zeros((len(examples), 1, 2))}, examples, [0])


def test_pair_accuracy_per_subset(tmp_path):
    ratings = [1, 0, 1, 0, 1, 0]
    meta = [{"pair": f"p{i // 2}", "subset": "a" if i < 4 else "b"} for i in range(6)]
    store = make_scored_store(tmp_path / "s", ratings, ["q0", "q0", "q1", "q1", "q2", "q2"], meta)
    result = pair_accuracy(store, {"probe": np.array([2.0, 1.0, 0.0, 1.0, 3.0, 3.0])}, n_boot=200)
    assert result["all"]["pairs"] == 3 and result["all"]["probe"]["value"] == pytest.approx(1.5 / 3)
    assert result["a"]["probe"]["value"] == pytest.approx(0.5) and result["b"]["probe"]["value"] == pytest.approx(0.5)


def test_best_of_n_picks_and_excludes_training_prompts(tmp_path):
    ratings = [0.1, 0.9, 0.5, 0.2, 0.4, 0.0, 1.0, 1.0, 0.0]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    store = make_scored_store(tmp_path / "s", ratings, groups, [{} for _ in ratings])
    scores = np.array([0.0, 1.0, 0.5, 5.0, 0.0, 0.0, 0.0, 0.0, 9.0])
    result = best_of_n(store, {"probe": scores}, exclude_groups={"c"}, n_boot=200)
    assert result["prompts"] == 2 and result["excluded_prompts"] == 1
    assert result["probe pick"]["value"] == pytest.approx((0.9 + 0.2) / 2)
    assert result["best possible"]["value"] == pytest.approx((0.9 + 0.4) / 2)
    assert result["random pick"]["value"] == pytest.approx((0.5 + 0.2) / 2)


def test_implicit_reward_normalizations():
    policy, reference, n = np.array([-1.0, -2.0]), np.array([-1.5, -1.0]), np.array([10.0, 4.0])
    np.testing.assert_allclose(implicit_reward(policy, reference, n, "sum"), [5.0, -4.0])
    np.testing.assert_allclose(implicit_reward(policy, reference, n, "mean"), [0.5, -1.0])
    np.testing.assert_allclose(implicit_reward(policy, None, n, "none"), [-10.0, -8.0])


def test_score_command_on_pairs_and_best_of_n(tiny, tiny_model_dir, tiny_store, tmp_path):
    result = sweep(tiny_store, SweepOptions(n_boot=100, control=False), progress=False)
    probe = result.best_probe
    probe.info["model"] = str(tiny_model_dir)
    folder = probe.save(tmp_path / "probe")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"question {i} the fox", "chosen": "paris " * (i + 2),
                                                    "rejected": "dog", "subset": "s1" if i % 2 else "s2"} for i in range(8)])
    done = run_cli("score", "--probe", str(folder), "--data", str(pairs), "--out", str(tmp_path / "o1"), "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o1" / "score.json").read_text())
    assert summary["pair_accuracy"]["all"]["pairs"] == 8 and set(summary["pair_accuracy"]) == {"all", "s1", "s2"}
    assert summary["pair_accuracy"]["all"]["response length"]["value"] == 1.0  # chosen is always longer here
    bon = write_jsonl(tmp_path / "bon.jsonl", [{"instruction": f"q{i // 4} brown fox", "output": "paris " * (1 + i % 4),
                                                "generator": "m", "sample_index": i % 4, "preference": 1 + (i % 4) / 4}
                                               for i in range(24)])
    done = run_cli("score", "--probe", str(folder), "--data", str(bon), "--out", str(tmp_path / "o2"), "--n-boot", "100")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "o2" / "score.json").read_text())
    assert summary["best_of_n"]["best possible"]["value"] == pytest.approx(0.75)
    assert summary["best_of_n"]["response length pick"]["value"] == pytest.approx(0.75)
    assert summary["best_of_n"]["random pick"]["value"] == pytest.approx(0.375)


def test_compare_two_runs(tmp_path):
    for name, signal in (("a", 1.0), ("b", 0.3)):
        store = planted_store(tmp_path / name / "store", response_signal=signal)
        report_from_stores(ReportInputs(store, None, SweepOptions(n_boot=100), sgd_grid=False), tmp_path / name / "report", {})
    html = compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "cmp")
    text = html.read_text()
    assert text.count("planted") >= 2 and "cannot" in text
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"]
    assert float(rows[0]["test r"].split()[0]) > float(rows[1]["test r"].split()[0])


def test_report_shows_score_results_saved_in_the_run(tmp_path):
    store = planted_store(tmp_path / "run" / "store")
    (tmp_path / "run" / "score-pairs").mkdir()
    (tmp_path / "run" / "score-pairs" / "score.json").write_text(json.dumps({
        "data": "pairs.jsonl", "examples": 4,
        "pair_accuracy": {"all": {"pairs": 2, "probe": {"value": 0.75, "low": 0.5, "high": 1.0}}}}))
    html, _ = report_from_stores(ReportInputs(store, None, SweepOptions(n_boot=100), sgd_grid=False), tmp_path / "run" / "report", {})
    text = html.read_text()
    assert "The probe as a reward model" in text and "probe 0.750 [0.500, 1.000]" in text
