"""The bundled models on real data from ../shared/data (a few dozen examples)."""

import numpy as np
import pytest
import torch

from helpers import SHARED_DATA, needs_shared_data
from latent_reward.activations import ExtractConfig, extract
from latent_reward.data import load_dataset
from latent_reward.models import load_model
from latent_reward.models.chat import render_example

pytestmark = [pytest.mark.integration, needs_shared_data()]


def test_smollm2_extraction_on_ultrafeedback(smollm2, tmp_path):
    assert (smollm2.info.n_layers, smollm2.info.d_model, smollm2.info.chat_template) == (30, 576, "model")
    examples = load_dataset(str(SHARED_DATA / "ultrafeedback_binarized_subset_1200.jsonl"), limit=24).examples
    result = extract(smollm2, examples, tmp_path / "s", ExtractConfig(max_tokens=256), progress=False)
    store = result.store
    assert store.array("response_last").shape == (24, 31, 576)
    assert np.isfinite(store.array("eot").astype(np.float32)).all()
    stats = store.manifest.stats
    assert stats.tokens_saved_by_prompt_sharing > 0 and stats.truncated > 0
    # A direct forward pass on one example agrees with the store at every layer but the last.
    index = 5
    rendered = render_example(smollm2.tokenizer, examples[index].messages, 256)
    with torch.no_grad():
        hidden = smollm2.model(torch.tensor([rendered.input_ids]), output_hidden_states=True).hidden_states
    direct = torch.stack([h[0] for h in hidden[:-1]], dim=1)[rendered.spans.eot].numpy()
    stored = store.array("eot")[index, :-1].astype(np.float32)
    relative_error = np.abs(stored - direct).max(axis=-1) / np.abs(direct).max(axis=-1)
    assert relative_error.max() < 5e-3


def test_gemma_base_model_uses_the_fallback_format(tmp_path):
    gemma = load_model("gemma-3-270m")
    assert gemma.info.chat_template == "fallback" and gemma.info.n_layers == 18
    examples = load_dataset(str(SHARED_DATA / "preference_pairs_llmbar_mtbench.jsonl"), limit=6).examples
    store = extract(
        gemma,
        examples,
        tmp_path / "g",
        ExtractConfig(positions=("assistant_start", "eot"), max_tokens=192),
        progress=False,
    ).store
    assert store.array("eot").shape == (6, 19, 640)
    assert np.isfinite(store.array("eot").astype(np.float32)).all()
