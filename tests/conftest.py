"""Shared fixtures: a tiny tokenizer and random-weight model built here, and the shared data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from latent_reward.data.schema import make_example
from latent_reward.models.loading import LoadedModel, ModelInfo

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

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
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                        pad_token="<|endoftext|>")
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(tokenizer, n_layers: int = 3, d_model: int = 32, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=64,
                         num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_loaded(n_layers: int = 3, d_model: int = 32, seed: int = 0) -> LoadedModel:
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, n_layers, d_model, seed)
    info = ModelInfo(name="tiny-llama", source="local", identity=f"tiny-seed{seed}", architecture="LlamaForCausalLM",
                     n_layers=n_layers, d_model=d_model, vocab_size=len(tokenizer), chat_template="model", dtype="float32")
    return LoadedModel(model, tokenizer, info)


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return tiny_loaded()


def synthetic_examples(n_prompts: int = 6, per_prompt: int = 3, seed: int = 0):
    """Rated examples with several responses per prompt, of varied lengths."""
    import random

    rng = random.Random(seed)
    words = "the quick brown fox jumps over lazy dog pasta water salt four capital".split()
    examples = []
    for p in range(n_prompts):
        prompt = [{"role": "user", "content": f"question {p}: " + " ".join(rng.choices(words, k=3 + p % 4))}]
        for r in range(per_prompt):
            response = " ".join(rng.choices(words, k=2 + (p * per_prompt + r) % 9))
            examples.append(make_example("synthetic", f"{p}.{r}", prompt, response, rating=float(rng.randint(1, 10))))
    return examples


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model and tokenizer saved as a local folder, for CLI and subprocess tests."""
    folder = tmp_path_factory.mktemp("tiny-model")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, records: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def rated_jsonl(tmp_path) -> Path:
    """A generic pair file (prompt / chosen / rejected / scores) in the local UltraFeedback format."""
    examples = synthetic_examples(n_prompts=8, per_prompt=2, seed=1)
    records = []
    for i in range(0, len(examples), 2):
        a, b = examples[i], examples[i + 1]
        records.append({"prompt": a.prompt_messages[0]["content"], "chosen": a.response, "rejected": b.response,
                        "score_chosen": a.rating, "score_rejected": b.rating})
    return write_jsonl(tmp_path / "pairs.jsonl", records)


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The bundled default model (converted to a safetensors cache on first use)."""
    from latent_reward.models import load_model

    return load_model("smollm2-135m-instruct")
