import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import accelerate_two, cli, direct_states, synthetic_examples, write_jsonl
from latent_reward.activations import ActivationStore, ExtractConfig, extract
from latent_reward.activations import store as store_format
from latent_reward.errors import UserError

ALL_POSITIONS = ("user_end", "assistant_start", "response_last", "eot", "response_mean", "response_tokens")


def test_stored_states_equal_a_direct_forward_pass(tiny, tmp_path):
    examples = synthetic_examples()
    config = ExtractConfig(positions=ALL_POSITIONS, token_layers=(1, 3), logprobs=True, batch_tokens=200, shard_size=5)
    store = extract(tiny, examples, tmp_path / "store", config, progress=False).store
    assert store.layers == [0, 1, 2, 3] and len(store) == len(examples)
    assert store.array("eot").shape == (len(examples), 4, 32) and store.array("eot").dtype == np.float16
    assert store.ids == [e.id for e in examples]
    np.testing.assert_array_equal(store.ratings, [e.rating for e in examples])
    for index, example in enumerate(examples):
        rendered, states, out = direct_states(tiny, example.messages)
        s = rendered.spans
        expected = {
            "user_end": states[s.user_end],
            "assistant_start": states[s.assistant_start],
            "response_last": states[s.response_last],
            "eot": states[s.eot],
            "response_mean": states[s.response_start : s.response_end].mean(0),
        }
        for name, value in expected.items():
            np.testing.assert_allclose(store.array(name)[index], value, rtol=2e-3, atol=2e-3, err_msg=name)
        np.testing.assert_allclose(
            store.token_states(index), states[s.response_start : s.response_end][:, [1, 3]], rtol=2e-3, atol=2e-3
        )
        logprobs = torch.log_softmax(out.logits[0], -1)
        # log pi(y|x): the response's tokens and the end-of-turn token after them
        targets = torch.tensor(rendered.input_ids[s.response_start : s.eot + 1])
        reference = logprobs[s.response_start - 1 : s.eot].gather(1, targets[:, None])
        assert store.stat("logprob_sum")[index] == pytest.approx(reference.sum().item(), rel=1e-4)
        assert store.stat("logprob_mean")[index] == pytest.approx(reference.mean().item(), rel=1e-4)
    # The last index is the raw block output: the model's final norm maps it to transformers' last entry.
    normed = tiny.model.model.norm(torch.tensor(store.array("eot")[:, -1].astype(np.float32)))
    assert not np.allclose(store.array("eot")[:, -1], normed.detach().numpy(), atol=1e-2)
    assert "BEFORE the final norm" in store.manifest.residual_convention


def test_prompt_sharing_saves_tokens_and_changes_nothing(tiny, tmp_path):
    examples = synthetic_examples(n_prompts=4, per_prompt=4)
    shared = extract(tiny, examples, tmp_path / "a", ExtractConfig(share_prompts=True), progress=False).store
    separate = extract(tiny, examples, tmp_path / "b", ExtractConfig(share_prompts=False), progress=False).store
    assert shared.manifest.stats.tokens_saved_by_prompt_sharing > 0
    assert separate.manifest.stats.tokens_saved_by_prompt_sharing == 0
    assert shared.manifest.stats.tokens == separate.manifest.stats.tokens
    for position in shared.positions:
        np.testing.assert_allclose(shared.array(position), separate.array(position), rtol=2e-3, atol=2e-3)


def test_layer_subset_reads_only_those_layers(tiny, tmp_path):
    store = extract(
        tiny, synthetic_examples(2, 2), tmp_path / "s", ExtractConfig(layers=(0, 2), positions=("eot",)), progress=False
    ).store
    assert store.layers == [0, 2] and store.positions == ["eot"]
    assert store.array("eot", layers=[2]).shape == (4, 1, 32)
    with pytest.raises(UserError, match="layer 1 is not in the store"):
        store.array("eot", layers=[1])
    with pytest.raises(UserError, match="out of range"):
        extract(tiny, synthetic_examples(2, 2), tmp_path / "t", ExtractConfig(layers=(9,)), progress=False)


def test_a_depth_reads_the_first_layers_as_a_full_extraction_does(tiny, tmp_path):
    examples = synthetic_examples(3, 2)
    full = extract(tiny, examples, tmp_path / "full", ExtractConfig(positions=("eot", "response_mean")), progress=False)
    half = extract(
        tiny, examples, tmp_path / "half", ExtractConfig(positions=("eot", "response_mean"), depth=0.5), progress=False
    )
    assert half.store.layers == [0, 1, 2]  # ceil(0.5 x 3 blocks)
    for position in ("eot", "response_mean"):
        np.testing.assert_allclose(
            half.store.array(position), full.store.array(position, layers=[0, 1, 2]), rtol=1e-3, atol=1e-3
        )
    with pytest.raises(ValueError, match="not both"):
        ExtractConfig(layers=(0, 1), depth=0.5)
    assert "depth" not in ExtractConfig().fingerprint_fields()  # stores made before the option still match


def test_log_probabilities_with_a_layer_subset_run_every_block(tiny, tmp_path):
    examples = synthetic_examples(3, 2)
    every = extract(tiny, examples, tmp_path / "all", ExtractConfig(positions=("eot",), logprobs=True), progress=False)
    early = ExtractConfig(positions=("eot",), layers=(1,), logprobs=True)  # the LM head needs the last block
    subset = extract(tiny, examples, tmp_path / "one", early, progress=False)
    np.testing.assert_allclose(subset.store.stat("logprob_sum"), every.store.stat("logprob_sum"), rtol=1e-5)
    np.testing.assert_allclose(subset.store.array("eot"), every.store.array("eot", layers=[1]), rtol=1e-3, atol=1e-3)


def test_refuses_a_folder_holding_another_store(tiny, tmp_path):
    examples = synthetic_examples(2, 2)
    extract(tiny, examples, tmp_path / "s", ExtractConfig(positions=("eot",)), progress=False)
    with pytest.raises(UserError, match="different positions"):
        extract(tiny, examples, tmp_path / "s", ExtractConfig(positions=("user_end",)), progress=False)
    with pytest.raises(UserError, match="different .*data"):
        extract(tiny, examples[:3], tmp_path / "s", ExtractConfig(positions=("eot",)), progress=False)
    # the refused runs left the store as it was
    assert ActivationStore.open(tmp_path / "s").positions == ["eot"]


@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_result(tiny_model_dir, tmp_path):
    records = [
        {
            "question": f"question {i}: " + "the quick brown fox " * (1 + i % 5),
            "answer": "paris is the capital " * (1 + i % 7),
            "score": i % 10 + 1,
        }
        for i in range(40)
    ]
    data = write_jsonl(tmp_path / "arena.jsonl", records)
    common = [
        "extract",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--shard-size",
        "2",  # 20 shards: after the last kill (at 9) a busy machine can write several more before the signal lands
        "--batch-tokens",
        "128",
        "--positions",
        "user_end,eot,response_tokens",
        "--dtype",
        "float32",
    ]
    reference = cli(*common, "--out", str(tmp_path / "whole"))
    assert reference.returncode == 0, reference.stderr
    # Kill the run with SIGKILL after 1, 3, 5, 7 and 9 written shards (each run resumes the last), then finish it.
    out = tmp_path / "resumed"
    killed_at = []
    for target in (1, 3, 5, 7, 9):
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("latent-reward")), *common, "--out", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while (
            time.time() < deadline
            and process.poll() is None
            and len(list((out / "shards").glob("*.safetensors"))) < target
        ):
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(len(list((out / "shards").glob("*.safetensors"))))
    assert killed_at == sorted(killed_at) and killed_at[0] >= 1 and killed_at[-1] < 20, killed_at
    assert json.loads((out / "manifest.json").read_text())["status"] == "incomplete"
    # a shard is trusted once its integrity record is written; a kill between its file and its record recomputes it
    recorded = sum(store_format.shard_problem(out, index) is None for index in range(killed_at[-1]))
    assert recorded in (killed_at[-1], killed_at[-1] - 1)
    with pytest.raises(UserError, match="unfinished"):
        ActivationStore.open(out)
    resumed = cli(*common, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{recorded} reused" in resumed.stdout.replace("\n", " ")
    whole, again = ActivationStore.open(tmp_path / "whole", verify=True), ActivationStore.open(out, verify=True)
    for position in ("user_end", "eot"):
        np.testing.assert_array_equal(whole.array(position), again.array(position))
    for index in (0, 17, 39):
        np.testing.assert_array_equal(whole.token_states(index), again.token_states(index))
    assert (out / "run.json").exists()


@pytest.mark.slow
def test_two_accelerate_processes_write_one_store(tiny_model_dir, tmp_path):
    records = [
        {"question": f"q{i} the quick brown fox", "answer": "paris " * (1 + i % 6), "score": i % 10} for i in range(24)
    ]
    data = write_jsonl(tmp_path / "arena.jsonl", records)
    common = [
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--shard-size",
        "3",
        "--positions",
        "assistant_start,eot",
        "--dtype",
        "float32",
    ]  # the tolerance below is float32's: each process batches its half differently
    single = cli("extract", *common, "--out", str(tmp_path / "one"))
    assert single.returncode == 0, single.stderr
    launched = accelerate_two("extract", *common, "--out", tmp_path / "two")
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert " ".join(launched.stdout.split()).count("(4 shards computed, 0 reused") == 2  # each process its half
    one, two = ActivationStore.open(tmp_path / "one"), ActivationStore.open(tmp_path / "two")
    assert two.manifest.n_shards == 8
    for position in ("assistant_start", "eot"):
        np.testing.assert_allclose(one.array(position), two.array(position), rtol=2e-3, atol=2e-3)


@pytest.mark.slow
def test_two_accelerate_processes_run_the_main_job_once(tiny_model_dir, tmp_path):
    """`accelerate launch -m latent_reward run`: both processes extract their shards of both stores (the random-init
    control's, then the model's); the first analyses them and writes the run folder, once."""
    records = [
        {"question": f"q{i // 4} the quick brown fox", "answer": "paris " * (1 + i % 6) + f"{i}", "score": i % 7}
        for i in range(48)
    ]
    data = write_jsonl(tmp_path / "arena.jsonl", records)
    options = ["--data", data, "--model", tiny_model_dir, "--dtype", "float32", "--shard-size", "6", "--permutations"]
    common = [*options, "10", "--no-trajectory", "--positions", "assistant_start,eot"]
    single = cli("run", *common, "--out", tmp_path / "one")
    assert single.returncode == 0, single.stderr
    launched = accelerate_two("run", *common, "--out", tmp_path / "two")
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("done in") == 1  # one process reported
    for name in ("store", "store-random-init"):
        one, two = ActivationStore.open(tmp_path / "one" / name), ActivationStore.open(tmp_path / "two" / name)
        assert two.manifest.n_shards == one.manifest.n_shards > 2 and two.ids == one.ids
        # the first process computed only its share (the manifest counts its own tokens)
        assert two.manifest.timings["tokens_this_run"] < 0.75 * one.manifest.timings["tokens_this_run"]
        for position in ("assistant_start", "eot"):
            np.testing.assert_allclose(one.array(position), two.array(position), rtol=2e-3, atol=2e-3)
    results = json.loads((tmp_path / "two" / "report" / "results.json").read_text())
    assert results["readout"]["probe"]["scores"]["pearson"]["value"] is not None
    again = accelerate_two("run", *common, "--out", tmp_path / "two")  # both stores complete: reused by each process
    assert again.returncode == 0 and again.stdout.count("done in") == 1, again.stderr[-3000:]


def test_group_means_average_rows_of_each_group():
    from latent_reward.evaluation.groups import group_means

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    names, means = group_means(x, np.array(["b", "a", "b", "a", "c", "b"]))
    assert list(names) == ["a", "b", "c"]
    np.testing.assert_allclose(means, [[4, 5], [(0 + 4 + 10) / 3, (1 + 5 + 11) / 3], [8, 9]])
