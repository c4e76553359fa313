"""The accelerator code paths on the tiny random model: each result on the accelerator against the same
computation on the CPU, with the accelerator's batching plan, and both against a float64 reference (one plain
unbatched forward of a float64 copy of the model on the CPU, read at the token positions by hand).

On a GPU (benchmarks/device_check.sh runs them on a lent one) the accelerator is cuda. Without one (CI) it is
the CPU again, but its runs still take the plan a GPU would (a forward call priced at its whole token budget),
so the comparisons check that the plan changes nothing but speed; the float64 reference is what makes each of them
able to fail there (wrong positions, padding or cache rows would agree between two CPU runs, not with it). bfloat16,
`--device-map auto` and training run on the CPU too.
"""

import contextlib
import copy

import numpy as np
import pytest
import torch

import latent_reward.batching as batching
from helpers import direct_states, synthetic_examples, write_jsonl
from latent_reward.activations import ExtractConfig, extract
from latent_reward.activations.plan import forward_calls, make_units, prompt_chunks
from latent_reward.activations.tokens import response_token_states
from latent_reward.config import DataSpec
from latent_reward.generation import GenerationConfig, Intervention, generate_chat
from latent_reward.generation.batched import PromptCache
from latent_reward.generation.teacher_forced import read_back
from latent_reward.models.chat import prompt_token_ids, render_example
from latent_reward.models.loading import LoadedModel, load_model
from latent_reward.training.trainers import PostTrainConfig
from latent_reward.workflows.train import TrainJob, run_train

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Against the float64 reference: the store keeps float16 (about 1e-3 relative); a GPU's float32 kernels add their own
# rounding (TF32 matmuls where enabled).
TOLERANCE = 2e-3 if DEVICE == "cpu" else 1e-2
FLOAT32 = 1e-4 if DEVICE == "cpu" else 1e-2  # float32 results that no store rounded
POSITIONS = ("user_end", "assistant_start", "response_last", "eot", "response_mean")
CONVERSATIONS = [
    [{"role": "user", "content": text}]
    for text in (
        "what is two plus two?",
        "how do I cook pasta? boil water, add salt",
        "the quick brown fox",
        "Paris is the capital of",
    )
]


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
    return extract(
        loaded, synthetic_examples(), folder, CONFIG.model_copy(update={"logprobs": logprobs}), progress=False
    ).store


@pytest.fixture(scope="module")
def reference(tiny) -> LoadedModel:
    """The tiny model in float64 on the CPU: every result below is checked against its plain forwards."""
    return on(tiny, "cpu", torch.float64)


@pytest.fixture(scope="module")
def expected(reference) -> dict:
    """Per position, float64 [examples, layers, d] read by hand from one unbatched float64 forward per example; and
    each example's response log-probability sum (end-of-turn token included) and response-token states at residual
    index 2."""
    out: dict = {name: [] for name in (*POSITIONS, "logprob_sum", "tokens")}
    for example in synthetic_examples():
        rendered, states, forward = direct_states(reference, example.messages)
        s = rendered.spans
        for name, index in (
            ("user_end", s.user_end),
            ("assistant_start", s.assistant_start),
            ("response_last", s.response_last),
            ("eot", s.eot),
        ):
            out[name].append(states[index])
        out["response_mean"].append(states[s.response_start : s.response_end].mean(0))
        # log pi(y | x): the response's tokens and the end-of-turn token after them
        logprobs = torch.log_softmax(forward.logits[0], -1)[s.response_start - 1 : s.eot]
        targets = torch.tensor(rendered.input_ids[s.response_start : s.eot + 1])
        out["logprob_sum"].append(logprobs.gather(1, targets[:, None]).sum().item())
        out["tokens"].append(states[s.response_start : s.response_end, 2])
    return {name: values if name == "tokens" else np.array(values) for name, values in out.items()}


def assert_matches_reference(store, expected: dict, tolerance: float = TOLERANCE) -> None:
    for position in POSITIONS:
        np.testing.assert_allclose(
            store.array(position).astype(np.float64),
            expected[position],
            rtol=tolerance,
            atol=tolerance,
            err_msg=position,
        )


def forward(loaded: LoadedModel, ids: list[int], steer: Intervention | None = None, start: int = 0):
    """(logits [seq, vocab], residual index 2 [seq, d]) of one plain forward of `ids`; with `steer` (an "add" at
    residual index 1), its vector added to the output of the first block at positions from `start` on, by hand."""
    model = loaded.model
    dtype = next(model.parameters()).dtype
    handle = None
    if steer is not None:
        assert steer.layer == 1 and steer.kind == "add"
        vector = torch.as_tensor(steer.vector, dtype=dtype)

        def add(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden.clone()
            hidden[:, start:] += vector
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handle = model.model.layers[0].register_forward_hook(add)
    try:
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    return out.logits[0].double(), out.hidden_states[2][0].double().numpy()


def test_the_accelerator_plan_batches_differently_from_the_cpu_plan(tiny):
    """What makes the comparisons below more than a run against itself where there is no GPU."""
    units = make_units([render_example(tiny.tokenizer, e.messages) for e in synthetic_examples()])
    cpu = forward_calls(prompt_chunks(units, CONFIG.prompt_tokens, "cpu"), CONFIG.batch_tokens, "cpu")
    with accelerator_plan():
        accelerator = forward_calls(prompt_chunks(units, CONFIG.prompt_tokens, DEVICE), CONFIG.batch_tokens, DEVICE)
    assert accelerator < cpu


def test_extraction_on_the_accelerator_stores_what_the_cpu_stores(tiny, tmp_path, expected):
    cpu = stored(tiny, tmp_path / "cpu")
    with accelerator_plan():
        gpu = stored(on(tiny, DEVICE), tmp_path / "accelerator")
    assert gpu.ids == cpu.ids
    assert_matches_reference(cpu, expected, 2e-3)
    assert_matches_reference(gpu, expected)
    for position in POSITIONS:
        np.testing.assert_allclose(
            gpu.array(position).astype(np.float32), cpu.array(position).astype(np.float32), rtol=1e-2, atol=1e-2
        )
    np.testing.assert_allclose(gpu.stat("logprob_sum"), expected["logprob_sum"], rtol=FLOAT32, atol=FLOAT32)
    np.testing.assert_allclose(gpu.stat("logprob_sum"), cpu.stat("logprob_sum"), rtol=1e-3, atol=1e-3)


def test_bfloat16_extraction_on_the_accelerator_stays_near_float32(tiny, tmp_path, expected):
    with accelerator_plan():
        half = stored(on(tiny, DEVICE, torch.bfloat16), tmp_path / "bf16", logprobs=False)
    for position in POSITIONS:
        error = relative_error(half.array(position), expected[position])
        # bfloat16 keeps 8 bits of mantissa: near the reference, and not float32's own error (it ran in bfloat16)
        assert 1e-3 < error < 0.05, (position, error)


def test_token_states_on_the_accelerator_match_the_cpu(tiny, expected):
    messages = [e.messages for e in synthetic_examples()]
    cpu, _ = response_token_states(tiny, messages, layer=2)
    with accelerator_plan():
        gpu, _ = response_token_states(on(tiny, DEVICE), messages, layer=2, batch_tokens=64)
    assert len(gpu) == len(expected["tokens"])
    for a, b, truth in zip(gpu, cpu, expected["tokens"]):
        assert a.shape == truth.shape
        np.testing.assert_allclose(b, truth, rtol=1e-4, atol=1e-4)  # float32 on the CPU, unrounded
        np.testing.assert_allclose(a, truth, rtol=FLOAT32, atol=FLOAT32)


def test_batched_generation_on_the_accelerator_gives_the_cpu_replies(tiny, reference):
    config = GenerationConfig(max_new_tokens=6)
    gpu_model = on(tiny, DEVICE)
    cpu = generate_chat(tiny, CONVERSATIONS, config, read_layer=2)
    with accelerator_plan():
        batched = generate_chat(gpu_model, CONVERSATIONS, config, read_layer=2)
        single = generate_chat(gpu_model, CONVERSATIONS, config.model_copy(update={"batch_size": 1}), read_layer=2)
    assert [r.ids for r in batched] == [r.ids for r in single] == [r.ids for r in cpu]
    for a, b in zip(batched, cpu):
        np.testing.assert_allclose(a.states, b.states, rtol=1e-3, atol=1e-3)
    for reply, conversation in zip(batched, CONVERSATIONS):
        prompt = prompt_token_ids(tiny.tokenizer, conversation)
        assert reply.prompt_ids == prompt and len(reply.ids) == 6
        logits, states = forward(reference, prompt + reply.ids)
        # greedy: each token is the float64 model's argmax after the prompt and the tokens before it
        assert logits[len(prompt) - 1 : -1].argmax(-1).tolist() == reply.ids
        # the states read: the prompt's last token, then each generated token, at residual index 2
        np.testing.assert_allclose(reply.states, states[len(prompt) - 1 :], rtol=FLOAT32, atol=FLOAT32)


def test_steering_on_the_accelerator_moves_what_it_moves_on_the_cpu(tiny, reference):
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
    moved = on(tiny, DEVICE)
    cached = read_back(moved, prompts, replies, steer, prompt_cache=PromptCache(moved.model))
    for a, b, c in zip(on_gpu, on_cpu, cached):  # the prompts' cached pass (steer's conditions share it) on the device
        assert a.nll == pytest.approx(b.nll, rel=1e-3, abs=1e-3) and a.kl == pytest.approx(b.kl, rel=1e-2, abs=1e-4)
        assert c.nll == pytest.approx(b.nll, rel=1e-3, abs=1e-3) and c.kl == pytest.approx(b.kl, rel=1e-2, abs=1e-4)
    assert max(b.kl for b in on_cpu) > 1e-3  # the vector changes the distributions, so the comparison means something
    for prompt, reply, read in zip(prompts, gpu, on_gpu):
        # by hand on the float64 model: the vector added to the reply's positions only (scope "generated")
        base, _ = forward(reference, prompt + reply.ids)
        moved, states = forward(reference, prompt + reply.ids, steer[0], start=len(prompt))
        # the steered replies are the steered model's greedy tokens (the first one from the unsteered prompt pass)
        assert moved[len(prompt) - 1 : -1].argmax(-1).tolist() == reply.ids
        np.testing.assert_allclose(reply.states, states[len(prompt) - 1 :], rtol=FLOAT32, atol=FLOAT32)
        rows = slice(len(prompt) - 1, len(prompt) + len(reply.ids) - 1)  # the logits that predict each reply token
        base, moved = torch.log_softmax(base[rows], -1), torch.log_softmax(moved[rows], -1)
        nll = -base.gather(1, torch.tensor(reply.ids)[:, None]).mean().item()
        kl = (moved.exp() * (moved - base)).sum(-1).mean().item()
        assert read.nll == pytest.approx(nll, rel=FLOAT32, abs=1e-5)
        assert read.kl == pytest.approx(kl, rel=10 * FLOAT32, abs=1e-6)


def test_device_map_auto_places_the_model_on_the_accelerator_and_extracts_what_the_cpu_does(
    tiny_model_dir, tmp_path, expected
):
    loaded = load_model(str(tiny_model_dir), dtype="float32", device_map="auto")
    assert next(loaded.model.parameters()).device.type == DEVICE
    with accelerator_plan():
        gpu = stored(loaded, tmp_path / "accelerator", logprobs=False)
    assert_matches_reference(gpu, expected)  # the saved copy of the tiny model, so the same reference
    cpu = stored(load_model(str(tiny_model_dir), dtype="float32"), tmp_path / "cpu", logprobs=False)
    for position in POSITIONS:
        np.testing.assert_allclose(
            gpu.array(position).astype(np.float32), cpu.array(position).astype(np.float32), rtol=1e-2, atol=1e-2
        )


def test_a_random_init_copy_under_device_map_auto_lands_on_the_accelerator_with_the_same_weights(tiny_model_dir):
    whole = load_model(str(tiny_model_dir), dtype="float32", device="cpu", random_init_seed=4)
    spread = load_model(str(tiny_model_dir), dtype="float32", device_map="auto", random_init_seed=4)
    assert next(spread.model.parameters()).device.type == DEVICE
    for a, b in zip(whole.model.parameters(), spread.model.parameters()):
        assert torch.equal(a, b.cpu())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_training_steps_run_on_the_accelerator_in_bfloat16(method, tiny_model_dir, tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": f"question {i} the quick fox", "chosen": "paris is the capital", "rejected": "dog dog dog dog"}
            for i in range(12)
        ],
    )
    on_gpu = DEVICE == "cuda"
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    summary = run_train(
        TrainJob(
            model=str(tiny_model_dir),
            data=DataSpec(source=str(pairs)),
            config=PostTrainConfig(method=method, max_steps=2, max_length=64, bf16=True),
            out=tmp_path / method,
        )
    ).result
    assert summary.steps == 2
    if on_gpu:
        assert torch.cuda.max_memory_allocated() > before  # the trainer put the model and its batches on the GPU
    start = load_model(str(tiny_model_dir), dtype="float32").model.state_dict()
    trained = load_model(str(tmp_path / method), dtype="float32", device=DEVICE)
    assert any(not torch.equal(value.cpu(), start[name]) for name, value in trained.model.state_dict().items())
    with accelerator_plan():
        assert len(stored(trained, tmp_path / "store", logprobs=False)) == len(synthetic_examples())


def test_auto_precision_loads_bfloat16_on_a_gpu_and_float32_on_a_cpu_without_bfloat16_instructions(tiny_model_dir):
    """--dtype auto (every loading path's default): on a GPU the weights are bfloat16; on a CPU, bfloat16 only where the
    CPU has bfloat16 instructions (torch's bfloat16 matmul is hundreds of times slower without them)."""
    from latent_reward.config import ModelSpec
    from latent_reward.models.devices import cpu_computes_bfloat16

    bfloat16 = DEVICE == "cuda" or cpu_computes_bfloat16()
    spec = ModelSpec(name=str(tiny_model_dir), device=DEVICE)
    assert spec.dtype == ("bfloat16" if bfloat16 else "float32")
    loaded = spec.load()
    assert next(loaded.model.parameters()).dtype == (torch.bfloat16 if bfloat16 else torch.float32)
    assert loaded.info.dtype == spec.dtype and next(loaded.model.parameters()).device.type == DEVICE


def test_the_analysis_fits_on_the_accelerator_what_it_fits_on_the_cpu(tmp_path):
    """The ridge fits on the accelerator (`ReadoutConfig.device`, `analysis_device`): each fold's leave-one-prompt-out
    choice and fit in float64 as on the CPU, for one target (systems solved) and several (inverted once); the text
    baselines' primal, dual and within-prompt fits, their errors also against sklearn's refits without each prompt
    (what makes this able to fail on a CPU, where the two sides are the same computation); and the whole readout,
    cells and headline, on a planted store."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    from helpers import planted_store
    from latent_reward.analysis.sweep import SweepConfig
    from latent_reward.experiments.readout import ReadoutConfig, reward_readout
    from latent_reward.probes.compute import analysis_device
    from latent_reward.probes.ridge import logo_ridge, ridge_cv_folds

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3, 24))
    y = np.column_stack([x[:, 2] @ rng.normal(size=24) + rng.normal(size=120), rng.normal(size=(120, 5))])
    groups, folds = np.repeat(np.arange(40), 3), np.repeat(np.arange(40) % 4, 3)
    for targets in (y[:, 0], y):
        with analysis_device("cpu"):
            on_cpu = list(ridge_cv_folds(x, targets, groups, folds))
        with analysis_device(DEVICE):
            on_device = list(ridge_cv_folds(x, targets, groups, folds))
        for a, b in zip(on_device, on_cpu, strict=True):
            np.testing.assert_allclose(a.mse, b.mse, rtol=1e-8)
            np.testing.assert_array_equal(a.best_alpha, b.best_alpha)
            np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-8, atol=1e-10)
    alphas = np.array([0.1, 1.0, 10.0, 100.0])
    wide = rng.normal(size=(40, 60))  # fewer rows than columns: the dual form, through the kernel
    for features, within in ((x[:, 2], False), (wide, False), (wide, True), (x[:, 2], True)):
        rows = len(features)
        with analysis_device("cpu"):
            cpu_fit = logo_ridge(features, y[:rows, 0], groups[:rows], alphas, within=within)
        with analysis_device(DEVICE):
            device_fit = logo_ridge(features, y[:rows, 0], groups[:rows], alphas, within=within)
        np.testing.assert_allclose(device_fit.errors, cpu_fit.errors, rtol=1e-8)
        np.testing.assert_allclose(device_fit.weights, cpu_fit.weights, rtol=1e-7, atol=1e-10)
        if not within:  # and both against sklearn's Ridge refitted without each prompt in turn
            for alpha, error in zip(alphas, device_fit.errors, strict=True):
                held_out = cross_val_predict(
                    Ridge(alpha=alpha), features, y[:rows, 0], groups=groups[:rows], cv=LeaveOneGroupOut()
                )
                assert error == pytest.approx(np.mean((held_out - y[:rows, 0]) ** 2), rel=1e-7)
    store = planted_store(tmp_path / "store", n_groups=40)
    config = ReadoutConfig(sweep=SweepConfig(n_boot=200), permutations=5, split_seeds=1, sgd_grid=False)
    readouts = [
        reward_readout(store, config.model_copy(update={"device": device}), progress=False)[0]
        for device in ("cpu", DEVICE)
    ]
    assert [readout.fit_device.split(":")[0] for readout in readouts] == ["cpu", DEVICE]
    assert readouts[0].fold_cells == readouts[1].fold_cells
    assert abs(readouts[0].probe.scores.pearson.value - readouts[1].probe.scores.pearson.value) < 1e-4
