"""Post-training on the tiny model: each trainer, reloading the checkpoint, DPO learning an easy preference,
resuming."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli, write_jsonl
from latent_reward.activations import ExtractConfig, extract
from latent_reward.config import DataSpec
from latent_reward.data import load_dataset
from latent_reward.errors import UserError
from latent_reward.experiments.readout import seen_mask
from latent_reward.experiments.reward_model import implicit_reward
from latent_reward.models.loading import load_model
from latent_reward.training.trainers import PostTrainConfig
from latent_reward.workflows.train import TrainJob, run_train

CALLS: list = []


def length_reward(prompts, completions, **kwargs):
    """A reward for the online test: records what it was called with."""
    CALLS.append((prompts, completions))
    return [float(len(c[-1]["content"] if isinstance(c, list) else c)) for c in completions]


@pytest.fixture
def pairs(tmp_path):
    return write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": f"question {i} the quick fox", "chosen": "paris is the capital", "rejected": "dog dog dog dog"}
            for i in range(12)
        ],
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_each_trainer_runs_and_its_checkpoint_reloads(method, tiny_model_dir, pairs, tmp_path):
    out = tmp_path / method
    summary = run_train(
        TrainJob(
            model=str(tiny_model_dir),
            data=DataSpec(source=str(pairs)),
            config=PostTrainConfig(method=method, max_steps=2, max_length=64),
            out=out,
        )
    ).result
    assert summary.steps == 2 and (out / "latent_reward.json").exists() and (out / "metrics.csv").exists()
    loaded = load_model(str(out), dtype="float32")  # two small steps: bfloat16 would round them away
    start = load_model(str(tiny_model_dir), dtype="float32").model.state_dict()
    moved = [name for name, tensor in loaded.model.state_dict().items() if not torch.equal(tensor, start[name])]
    assert moved, "two training steps left every weight as it was"
    examples = load_dataset(str(pairs), limit=4).examples
    assert loaded.info.post_training == tuple(
        sorted({e.source_split for e in examples})
    )  # named as the data's rows are
    store = extract(
        loaded, examples, tmp_path / f"store-{method}", ExtractConfig(positions=("eot",)), progress=False
    ).store
    assert store.array("eot").shape[0] == 4
    assert seen_mask(store, np.arange(4)).all()  # a run on the checkpoint shows its training rows apart


@pytest.mark.slow
def test_online_training_calls_the_reward_with_generated_text(tiny_model_dir, pairs, tmp_path):
    CALLS.clear()
    summary = run_train(
        TrainJob(
            model=str(tiny_model_dir),
            data=DataSpec(source=str(pairs)),
            config=PostTrainConfig(method="online", max_steps=2, num_generations=2, max_completion_length=6),
            reward=f"{__name__}:length_reward",
            out=tmp_path / "online",
        )
    ).result
    assert summary.steps == 2 and CALLS
    start, trained = (
        load_model(str(folder), dtype="float32").model.state_dict() for folder in (tiny_model_dir, tmp_path / "online")
    )
    assert any(not torch.equal(tensor, start[name]) for name, tensor in trained.items())  # the reward moved the weights
    prompts, completions = CALLS[0]
    assert "question" in prompts[0][-1]["content"] and isinstance(completions[0][-1]["content"], str)


@pytest.mark.slow
def test_dpo_learns_an_easy_preference_measured_by_its_implicit_reward(tiny_model_dir, pairs, tmp_path):
    run_train(
        TrainJob(
            model=str(tiny_model_dir),
            data=DataSpec(source=str(pairs)),
            config=PostTrainConfig(method="dpo", max_steps=12, learning_rate=5e-3, batch_size=4, max_length=64),
            out=tmp_path / "dpo",
        )
    )
    examples = load_dataset(str(pairs)).examples
    config = ExtractConfig(positions=("eot",), layers=(0,), logprobs=True)
    policy, reference = (
        extract(load_model(str(folder), dtype="float32"), examples, tmp_path / name, config, progress=False).store
        for folder, name in ((tmp_path / "dpo", "p"), (tiny_model_dir, "r"))
    )
    reward = implicit_reward(policy.stat("logprob_sum"), reference.stat("logprob_sum"))
    chosen, rejected = reward[policy.ratings == 1], reward[policy.ratings == 0]
    assert np.mean(chosen > rejected) == 1.0 and np.mean(chosen - rejected) > 0  # at the start both are 0


@pytest.mark.slow
def test_a_killed_training_run_resumes_and_an_unfinished_one_is_refused(tiny_model_dir, pairs, tmp_path):
    out = tmp_path / "sft"
    command = [
        str(Path(sys.executable).with_name("latent-reward")),
        "train",
        "sft",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(pairs),
        "--out",
        str(out),
        "--max-steps",
        "60",
        "--max-tokens",
        "64",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "trainer").glob("checkpoint-25/trainer_state.json")):
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "latent_reward.json").exists()
    with pytest.raises(UserError, match="unfinished training run"):
        load_model(str(out))
    done = cli(*command[1:])
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "latent_reward.json").read_text())
    assert summary["resumed"] is True and summary["steps"] == 60


def test_bad_training_input_is_one_line(tiny_model_dir, tmp_path):
    rated = write_jsonl(tmp_path / "same.jsonl", [{"question": f"q{i}", "answer": "a", "score": 5} for i in range(4)])
    result = cli("train", "dpo", "--model", tiny_model_dir, "--data", rated, "--out", tmp_path / "o")
    assert result.returncode == 2 and "preference pairs" in result.stderr
    result = cli(
        "train",
        "online",
        "--model",
        tiny_model_dir,
        "--data",
        rated,
        "--out",
        tmp_path / "o2",
        "--reward",
        "nowhere:nothing",
    )
    assert result.returncode == 2 and "cannot import the reward" in result.stderr
    result = cli("train", "sft", "--model", tmp_path / "missing-model", "--data", rated, "--out", tmp_path / "o3")
    assert result.returncode == 2 and "cannot load model" in result.stderr


def test_report_to_reaches_trl_and_tensorboard_writes_into_the_output_folder(pairs, tmp_path, monkeypatch):
    import os

    from transformers import TrainerCallback
    from transformers.integrations import integration_utils

    import latent_reward.training.trainers as trainers
    from helpers import tiny_loaded
    from latent_reward.training.data import sft_records

    made = []

    class Recorder(TrainerCallback):  # stands in for transformers' TensorBoard callback (no tensorboard needed)
        def __init__(self):
            made.append(os.environ.get(trainers.TENSORBOARD_FOLDER))

    monkeypatch.setitem(integration_utils.INTEGRATION_TO_CALLBACK, "tensorboard", Recorder)
    monkeypatch.setattr(trainers, "INTEGRATION_PACKAGES", {})
    monkeypatch.delenv(trainers.TENSORBOARD_FOLDER, raising=False)
    tiny = tiny_loaded()
    records = sft_records(load_dataset(str(pairs)).examples)
    quiet = trainers.build_trainer(
        PostTrainConfig(method="sft", max_steps=1), tiny.model, tiny.tokenizer, records, tmp_path / "a"
    )
    logged = trainers.build_trainer(
        PostTrainConfig(method="sft", max_steps=1, report_to="tensorboard"),
        tiny.model,
        tiny.tokenizer,
        records,
        tmp_path / "b",
        logs=tmp_path / "b-logs",
    )
    assert quiet.args.report_to == [] and logged.args.report_to == ["tensorboard"]
    assert made == [str(tmp_path / "b-logs")]
    assert trainers.TENSORBOARD_FOLDER not in os.environ  # set while the trainer was built only
    assert any(isinstance(callback, Recorder) for callback in logged.callback_handler.callbacks)


def test_report_to_without_its_package_is_one_line_before_training(pairs, tmp_path, monkeypatch):
    import latent_reward.training.trainers as trainers

    monkeypatch.setattr(trainers, "INTEGRATION_PACKAGES", {"wandb": ("no_such_package_for_wandb",)})
    result = cli(
        "train",
        "sft",
        "--model",
        tmp_path / "never-loaded",
        "--data",
        pairs,
        "--out",
        tmp_path / "o",
        "--report-to",
        "wandb",
    )
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: --report-to wandb needs the no_such_package_for_wandb package: pip install no_such_package_for_wandb"
    )


def test_the_judge_reward_asks_the_endpoint_it_is_given(tmp_path):
    from helpers import ChatServer, completion, rating_json
    from latent_reward.judging.client import Endpoint
    from latent_reward.training.rewards import make_reward

    def reply(body, count):  # rates a reply by how many words it has
        text = body["messages"][-1]["content"]
        return 200, completion(rating_json(text[text.index("<reply>") : text.index("</reply>")].count("word"))), None, 0

    server = ChatServer(reply)
    try:
        reward = make_reward("judge", Endpoint(base_url=server.url, model="rater"), tmp_path)
        prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
        completions = [[{"role": "assistant", "content": "word " * (i + 1)}] for i in range(3)]
        values = reward(prompts=prompts, completions=completions)
    finally:
        server.close()
    assert values == [1.0, 2.0, 3.0] and {b["model"] for b in server.requests} == {"rater"}


def test_a_judge_reward_needs_the_endpoint(pairs, tmp_path):
    result = cli(
        "train",
        "online",
        "--model",
        tmp_path / "never-loaded",
        "--data",
        pairs,
        "--out",
        tmp_path / "o",
        "--reward",
        "judge",
    )
    assert result.returncode == 2 and "--base-url" in result.stderr and len(result.stderr.strip().splitlines()) == 1
