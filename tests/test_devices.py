"""The accelerator code paths on the tiny random model: each result on the accelerator against the same
computation on the CPU, with the accelerator's batching plan.

On a GPU (benchmarks/device_check.sh runs them on a lent one) the accelerator is cuda. Without one (CI) it is
the CPU again, but its runs still take the plan a GPU would (a forward call priced at its whole token budget),
so the comparisons check that the plan changes nothing but speed, and bfloat16, `--device-map auto` and
training run on the CPU.
"""

import contextlib
import copy

import numpy as np
import pytest
import torch

import latent_reward.batching as batching
from helpers import synthetic_examples, write_jsonl
from latent_reward.activations import ExtractConfig, extract
from latent_reward.activations.plan import forward_calls, make_units, prompt_chunks
from latent_reward.activations.tokens import response_token_states
from latent_reward.config import DataSpec
from latent_reward.generation import GenerationConfig, Intervention, generate_chat
from latent_reward.generation.teacher_forced import read_back
from latent_reward.models.chat import prompt_token_ids, render_example
from latent_reward.models.loading import LoadedModel, load_model
from latent_reward.training.trainers import PostTrainConfig
from latent_reward.workflows.train import TrainJob, run_train

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
POSITIONS = ("user_end", "assistant_start", "response_last", "eot", "response_mean")
CONVERSATIONS = [[{"role": "user", "content": text}] for text in
                 ("what is two plus two?", "how do I cook pasta? boil water, add salt", "the quick brown fox", "Paris is the capital of")]


@contextlib.contextmanager
def accelerator_plan():
    """Batches planned as on a GPU: nothing to change on one; on a CPU, a call priced at its whole budget."""
    if DEVICE != "cpu":
        yield
        return
    cpu_price = batching.call_overhead_tokens
    batching.call_overhead_tokens = lambda device_type, budget: budget
    try:
        yield
    finally:
        batching.call_overhead_tokens = cpu_price


def on(loaded: LoadedModel, device: str, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A copy of the loaded model on another device and dtype."""
    return LoadedModel(copy.deepcopy(loaded.model).to(device=device, dtype=dtype), loaded.tokenizer, loaded.info)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b.astype(np.float64)))


CONFIG = ExtractConfig(positions=POSITIONS, token_layers=(1, 3), batch_tokens=200, shard_size=5)


def stored(loaded: LoadedModel, folder, logprobs: bool = True):
    return extract(loaded, synthetic_examples(), folder, CONFIG.model_copy(update={"logprobs": logprobs}), progress=False).store


def test_the_accelerator_plan_batches_differently_from_the_cpu_plan(tiny):
    """What makes the comparisons below more than a run against itself where there is no GPU."""
    units = make_units([render_example(tiny.tokenizer, e.messages) for e in synthetic_examples()])
    cpu = forward_calls(prompt_chunks(units, CONFIG.prompt_tokens, "cpu"), CONFIG.batch_tokens, "cpu")
    with accelerator_plan():
        accelerator = forward_calls(prompt_chunks(units, CONFIG.prompt_tokens, DEVICE), CONFIG.batch_tokens, DEVICE)
    assert accelerator < cpu


def test_extraction_on_the_accelerator_stores_what_the_cpu_stores(tiny, tmp_path):
    cpu = stored(tiny, tmp_path / "cpu")
    with accelerator_plan():
        gpu = stored(on(tiny, DEVICE), tmp_path / "accelerator")
    assert gpu.ids == cpu.ids
    for position in POSITIONS:
        np.testing.assert_allclose(gpu.array(position).astype(np.float32), cpu.array(position).astype(np.float32),
                                   rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(gpu.stat("logprob_sum"), cpu.stat("logprob_sum"), rtol=1e-3, atol=1e-3)


def test_bfloat16_extraction_on_the_accelerator_stays_near_float32(tiny, tmp_path):
    reference = stored(tiny, tmp_path / "cpu", logprobs=False)
    with accelerator_plan():
        half = stored(on(tiny, DEVICE, torch.bfloat16), tmp_path / "bf16", logprobs=False)
    for position in POSITIONS:
        assert relative_error(half.array(position), reference.array(position).astype(np.float64)) < 0.05


def test_token_states_on_the_accelerator_match_the_cpu(tiny):
    messages = [e.messages for e in synthetic_examples(n_prompts=3)]
    cpu, _ = response_token_states(tiny, messages, layer=2)
    with accelerator_plan():
        gpu, _ = response_token_states(on(tiny, DEVICE), messages, layer=2, batch_tokens=64)
    for a, b in zip(gpu, cpu):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_batched_generation_on_the_accelerator_gives_the_cpu_replies(tiny):
    config = GenerationConfig(max_new_tokens=6)
    gpu_model = on(tiny, DEVICE)
    cpu = generate_chat(tiny, CONVERSATIONS, config, read_layer=2)
    with accelerator_plan():
        batched = generate_chat(gpu_model, CONVERSATIONS, config, read_layer=2)
        single = generate_chat(gpu_model, CONVERSATIONS, config.model_copy(update={"batch_size": 1}), read_layer=2)
    assert [r.ids for r in batched] == [r.ids for r in single] == [r.ids for r in cpu]
    for a, b in zip(batched, cpu):
        np.testing.assert_allclose(a.states, b.states, rtol=1e-3, atol=1e-3)


def test_steering_on_the_accelerator_moves_what_it_moves_on_the_cpu(tiny):
    vector = np.linspace(-1, 1, 32).astype(np.float32)
    steer = (Intervention(1, vector, scope="generated"),)
    config = GenerationConfig(max_new_tokens=5)
    cpu = generate_chat(tiny, CONVERSATIONS, config, interventions=steer, read_layer=2)
    with accelerator_plan():
        gpu = generate_chat(on(tiny, DEVICE), CONVERSATIONS, config, interventions=steer, read_layer=2)
    assert [r.ids for r in gpu] == [r.ids for r in cpu]
    prompts = [prompt_token_ids(tiny.tokenizer, c) for c in CONVERSATIONS]
    replies = [r.ids for r in cpu]
    on_cpu = read_back(tiny, prompts, replies, steer)
    on_gpu = read_back(on(tiny, DEVICE), prompts, replies, steer)
    for a, b in zip(on_gpu, on_cpu):
        assert a.nll == pytest.approx(b.nll, rel=1e-3, abs=1e-3) and a.kl == pytest.approx(b.kl, rel=1e-2, abs=1e-4)
    assert max(b.kl for b in on_cpu) > 1e-3  # the vector changes the distributions, so the comparison means something


def test_device_map_auto_places_the_model_on_the_accelerator_and_extracts_what_the_cpu_does(tiny_model_dir, tmp_path):
    loaded = load_model(str(tiny_model_dir), dtype="float32", device_map="auto")
    assert next(loaded.model.parameters()).device.type == DEVICE
    with accelerator_plan():
        gpu = stored(loaded, tmp_path / "accelerator", logprobs=False)
    cpu = stored(load_model(str(tiny_model_dir), dtype="float32"), tmp_path / "cpu", logprobs=False)
    for position in POSITIONS:
        np.testing.assert_allclose(gpu.array(position).astype(np.float32), cpu.array(position).astype(np.float32),
                                   rtol=1e-2, atol=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_training_steps_run_on_the_accelerator_in_bfloat16(method, tiny_model_dir, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"question {i} the quick fox", "chosen": "paris is the capital",
                                                    "rejected": "dog dog dog dog"} for i in range(12)])
    on_gpu = DEVICE == "cuda"
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    summary = run_train(TrainJob(model=str(tiny_model_dir), data=DataSpec(source=str(pairs)),
                                 config=PostTrainConfig(method=method, max_steps=2, max_length=64, bf16=True), out=tmp_path / method))
    assert summary.steps == 2
    if on_gpu:
        assert torch.cuda.max_memory_allocated() > before  # the trainer put the model and its batches on the GPU
    start = load_model(str(tiny_model_dir), dtype="float32").model.state_dict()
    trained = load_model(str(tmp_path / method), dtype="float32", device=DEVICE)
    assert any(not torch.equal(value.cpu(), start[name]) for name, value in trained.model.state_dict().items())
    with accelerator_plan():
        assert len(stored(trained, tmp_path / "store", logprobs=False)) == len(synthetic_examples())
