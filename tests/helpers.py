"""Builders shared by the tests: a tiny tokenizer and random-weight model, synthetic rated examples,
planted activation stores, data files, and the command line, run in this process (cli) or as the installed
script in a new one (run_cli)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from latent_reward.activations import store as store_format
from latent_reward.activations.store import ActivationStore
from latent_reward.data.schema import Example, make_example
from latent_reward.io import write_json
from latent_reward.models.loading import LoadedModel, ModelInfo

# make test-fast points this at a folder that does not exist, so a unit test that reads the shared data fails
SHARED_DATA = Path(
    os.environ.get("LATENT_REWARD_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)


def needs_shared_data():
    """The mark for an integration test that reads ../shared/data: skipped, with the reason, where the folder is
    absent."""
    import pytest

    return pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"the shared rated data is not at {SHARED_DATA}")


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "how do I cook pasta? boil water, add salt, cook for ten minutes",
    "what is two plus two? it is four. anything else?",
    "User: Assistant: system you are a helpful assistant",
    "Paris is the capital of France and Berlin is the capital of Germany",
] * 4


def build_tokenizer(chat_template: str | None = CHATML_TEMPLATE):
    """A small byte-level BPE tokenizer trained on a few sentences (fast, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(tokenizer, n_layers: int = 3, d_model: int = 32, seed: int = 0, tie: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


def tiny_loaded(n_layers: int = 3, d_model: int = 32, seed: int = 0, tie: bool = True) -> LoadedModel:
    """The tiny random model (with tied embeddings its greedy replies repeat the prompt's last token; untie for varied
    text)."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, n_layers, d_model, seed, tie)
    info = ModelInfo(
        name="tiny-llama",
        source="local",
        identity=f"tiny-seed{seed}",
        architecture="LlamaForCausalLM",
        n_layers=n_layers,
        d_model=d_model,
        vocab_size=len(tokenizer),
        chat_template="model",
        dtype="float32",
    )
    return LoadedModel(model, tokenizer, info)


def direct_states(loaded: LoadedModel, messages: list[dict[str, str]]):
    """A reference for extraction: every residual index's full sequence from one plain unbatched forward (the last
    block's output taken before the final norm, as the store keeps it). Returns the rendering, the states
    [seq, n_layers + 1, d] and the model output (its logits)."""
    from latent_reward.models.chat import render_example

    rendered = render_example(loaded.tokenizer, messages)
    captured = {}
    handle = loaded.model.model.layers[-1].register_forward_hook(lambda m, a, out: captured.setdefault("raw", out))
    device = next(loaded.model.parameters()).device
    try:
        with torch.no_grad():
            out = loaded.model(torch.tensor([rendered.input_ids], device=device), output_hidden_states=True)
    finally:
        handle.remove()
    raw = captured["raw"][0] if isinstance(captured["raw"], tuple) else captured["raw"]
    layers = list(out.hidden_states[:-1]) + [raw]
    return rendered, torch.stack([h[0] for h in layers], dim=1).cpu().numpy(), out


def sklearn_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, factors) -> tuple[object, float]:
    """The ridge probe as its docstring describes it, built from sklearn alone (a reference for tests): the penalty
    (factor x rows) with the least leave-one-prompt-out squared error over all rows, on features z-scored on these
    rows, then Ridge at that penalty on every row. Returns the fitted pipeline (z-scoring + Ridge) and the penalty.
    Every penalty is refitted on each split at once (sklearn's Ridge takes one penalty per target column)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    alphas = np.asarray(factors, dtype=np.float64) * len(y)
    z, targets = StandardScaler().fit_transform(x), np.repeat(np.asarray(y, dtype=np.float64)[:, None], len(alphas), 1)
    held_out = np.empty_like(targets)
    for fitted, held in LeaveOneGroupOut().split(z, y, groups):
        held_out[held] = Ridge(alpha=alphas).fit(z[fitted], targets[fitted]).predict(z[held])
    alpha = float(alphas[int(np.argmin(((held_out - targets) ** 2).mean(0)))])
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x, y), alpha


def synthetic_examples(n_prompts: int = 6, per_prompt: int = 3, seed: int = 0) -> list[Example]:
    """Rated examples with several responses per prompt, of varied lengths."""
    rng = random.Random(seed)
    words = "the quick brown fox jumps over lazy dog pasta water salt four capital".split()
    examples = []
    for p in range(n_prompts):
        prompt = [{"role": "user", "content": f"question {p}: " + " ".join(rng.choices(words, k=3 + p % 4))}]
        for r in range(per_prompt):
            response = " ".join(rng.choices(words, k=2 + (p * per_prompt + r) % 9))
            examples.append(make_example("synthetic", f"{p}.{r}", prompt, response, rating=float(rng.randint(1, 10))))
    return examples


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it, in a new process (for the smoke test and the kill-and-resume
    tests)."""
    script = Path(sys.executable).with_name("latent-reward")
    return subprocess.run([str(script), *map(str, args)], capture_output=True, text=True, **kwargs)


def accelerate_two(*args) -> subprocess.CompletedProcess:
    """`accelerate launch -m latent_reward ARGS` with two processes, one thread each. --multi_gpu starts the processes
    (torchrun); without a GPU they share the CPU (--cpu would start only one)."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    options = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return subprocess.run(
        [*launcher, *options, "-m", "latent_reward", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def cli(*args) -> subprocess.CompletedProcess:
    """The command line run in this process: the console script's main() with its one error path, its exit code
    (SystemExit)
    and what it printed on stdout and stderr, in the same shape as run_cli's result. The environment is restored
    afterwards."""
    import contextlib
    import io

    from latent_reward.cli import main
    from latent_reward.cli.app import console

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    environment, saved_argv = dict(os.environ), sys.argv
    sys.argv = [str(Path(sys.executable).with_name("latent-reward")), *argv]  # what run.json records
    color, width = console._color_system, console._width
    console._color_system = None  # plain text, as through a pipe, even when pytest runs in a terminal with -s
    console.width = 400  # lines whole: a long temporary path would otherwise be folded mid-word
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exit_:
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        console._color_system, console._width = color, width
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(environment)
    return subprocess.CompletedProcess(["latent-reward", *argv], code, out.getvalue(), err.getvalue())


def write_store(
    folder,
    states: dict[str, np.ndarray],
    examples: list[Example],
    layers: list[int],
    model: dict | None = None,
    stats: dict[str, np.ndarray] | None = None,
) -> ActivationStore:
    """A complete one-shard store from arrays in memory (states[position]: [n, n_layers, d]), written through the
    store's own
    format functions, for tests with planted signals."""
    folder = Path(folder)
    (folder / store_format.SHARDS).mkdir(parents=True, exist_ok=True)
    tensors = {name: np.asarray(values, dtype=np.float16) for name, values in states.items()}
    tensors["example_index"] = np.arange(len(examples), dtype=np.int64)
    tensors.update(stats or {})
    store_format.write_shard(folder, 0, tensors)
    store_format.write_examples(folder, examples)
    manifest = store_format.new_manifest(
        {"n_examples": len(examples)},
        {"name": "planted", "n_layers": max(layers), **(model or {})},
        list(states),
        layers,
        [],
        max(layers),
        "planted",
        {},
    )
    write_json(
        folder / store_format.MANIFEST,
        manifest.model_copy(
            update={
                "status": "complete",
                "n_examples": len(examples),
                "n_shards": 1,
                "shards": store_format.shard_records(folder, 1),
            }
        ),
    )
    return ActivationStore.open(folder)


def _response(rng: np.random.Generator, words: tuple[str, ...] | None) -> str:
    count = int(rng.integers(1, 30))
    return "answer " * count if words is None else " ".join(rng.choice(words, size=count))


def planted_store(
    folder,
    n_groups=60,
    per_group=4,
    d=16,
    seed=0,
    signal_layer=2,
    prompt_signal=0.0,
    response_signal=1.0,
    model: dict | None = None,
    splits: list[str] | None = None,
    state_signal: float = 1.0,
    words: tuple[str, ...] | None = None,
) -> ActivationStore:
    """Two positions x 4 layers; the rating is linear in eot's layer `signal_layer` (plus an optional prompt-level term
    that also shows at assistant_start, the same for every response to a prompt). `state_signal` scales how strongly the
    states carry the signal without changing the ratings (a weaker "model" on the same data). Responses repeat "answer"
    1-29 times, or, with `words`, are 1-29 words drawn from them (lengths in characters and in words then differ)."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    group_index = np.repeat(np.arange(n_groups), per_group)
    prompt_value = rng.normal(size=n_groups)[group_index]
    response_value = rng.normal(size=n)
    rating = response_signal * response_value + prompt_signal * prompt_value + 0.1 * rng.normal(size=n)
    states = {name: rng.normal(size=(n, 4, d)) for name in ("assistant_start", "eot")}
    direction = rng.normal(size=d)
    states["eot"][:, signal_layer] += state_signal * np.outer(response_value, direction)
    states["assistant_start"][:, signal_layer] += state_signal * np.outer(prompt_value, direction)
    examples = []
    for i in range(n):
        meta = {"generator": f"m{i % per_group}"}
        if splits is not None:
            meta["source_split"] = splits[group_index[i]]
        messages = [
            {"role": "user", "content": f"prompt {group_index[i]} " + "word " * int(rng.integers(1, 9))},
            {"role": "assistant", "content": _response(rng, words)},
        ]
        examples.append(
            Example(
                id=f"planted:{i}", group=f"g{group_index[i]:04d}", messages=messages, rating=float(rating[i]), meta=meta
            )
        )
    stats = {
        "response_tokens_count": np.array([len(e.response.split()) for e in examples], dtype=np.int64),
        "n_tokens": np.full(n, 50, dtype=np.int64),
    }
    return write_store(folder, states, examples, [0, 1, 2, 3], model, stats)


def planted(n_groups=200, per_group=4, d=48, noise=0.3, seed=0, prompt_signal=0.0):
    """States with a known direction: rating = states . direction (+ optional prompt-level term)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), per_group).astype(str)
    scales = rng.uniform(0.5, 50, size=d)  # features on very different scales, like residual layers
    x = rng.normal(size=(len(groups), d)) * scales
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = (x / scales) @ direction + noise * rng.normal(size=len(groups))
    if prompt_signal:
        y += prompt_signal * rng.normal(size=n_groups)[np.repeat(np.arange(n_groups), per_group)]
    true_residual_direction = direction / scales
    return x, y, groups, true_residual_direction / np.linalg.norm(true_residual_direction)


def split(groups):
    ids = np.array([int(g) for g in groups])
    return ids % 5 < 3, ids % 5 == 3, ids % 5 == 4


class ChatServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (port 0), for client tests.

    `reply(body, count)` decides each answer from the request body and the number of requests so far:
    it returns (status, payload dict or text, headers, delay seconds). Every request body is kept.
    """

    def __init__(self, reply):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    count = len(server.requests)
                status, payload, headers, delay = reply(body, count)
                if delay:
                    import time

                    time.sleep(delay)
                data = (json.dumps(payload) if isinstance(payload, dict) else str(payload)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default backlog (5) drops concurrent connects, which then wait 1 s to retry

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text: str, prompt_tokens: int = 50, completion_tokens: int = 20) -> dict:
    """A chat-completions response body."""
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def rating_json(overall: int, aspects: int = 5) -> str:
    import json

    return json.dumps(
        {
            "instruction_following": aspects,
            "honesty": aspects,
            "truthfulness": aspects,
            "helpfulness": aspects,
            "overall": overall,
            "rationale": "canned",
        }
    )
