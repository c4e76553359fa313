"""The conversation experiment on the tiny model: role swapping, V at the right token, the measures."""

import json

import numpy as np
import pytest
import torch

from helpers import CHATML_TEMPLATE, build_tokenizer, synthetic_examples, tiny_loaded
from latent_reward.activations import ExtractConfig, extract
from latent_reward.experiments.conversation import (ConversationConfig, conversation, expected_reward, paired, refusal_style,
                                                    swap_roles)
from latent_reward.experiments.prompt_only import PromptOnlyConfig, fit_prompt_probe, prompt_only
from latent_reward.experiments.sweep import SweepConfig, sweep
from latent_reward.models.chat import FALLBACK_CHAT_TEMPLATE, prompt_token_ids
from latent_reward.report.conversation import write_conversation_report
from latent_reward.workflows.conversation import ConversationReport

HISTORY = [{"role": "system", "content": "you are a helpful assistant"}, {"role": "user", "content": "how do I cook pasta?"},
           {"role": "assistant", "content": "boil water, add salt."}, {"role": "user", "content": "and then?"}]


@pytest.fixture(scope="module")
def untied():
    """Untied embeddings: its greedy replies are not just the prompt's last token repeated."""
    return tiny_loaded(tie=False)


@pytest.fixture(scope="module")
def probes(untied, tmp_path_factory):
    store = extract(untied, synthetic_examples(n_prompts=30, per_prompt=3), tmp_path_factory.mktemp("conv"), ExtractConfig(),
                    progress=False).store
    fit = sweep(store, SweepConfig(n_boot=100), progress=False)
    result = prompt_only(store, PromptOnlyConfig(n_boot=100), fit)
    return fit_prompt_probe(store, fit, result), fit.best_probe


@pytest.mark.parametrize("template", [CHATML_TEMPLATE, FALLBACK_CHAT_TEMPLATE])
def test_the_user_turn_is_written_with_the_roles_swapped_in_the_models_own_template(template):
    tokenizer = build_tokenizer(template)
    swapped = swap_roles(HISTORY[1:3])
    assert [m["role"] for m in swapped] == ["system", "assistant", "user"]
    text = tokenizer.apply_chat_template(swapped, tokenize=False, add_generation_prompt=True)
    assert "boil water, add salt." in text and text.endswith("<|im_start|>assistant\n" if template == CHATML_TEMPLATE else "Assistant:")
    assert text.index("how do I cook pasta?") < text.index("boil water")  # the user's words now stand as the assistant's turn


def test_v_is_read_at_the_start_of_the_assistant_turn_of_a_multi_turn_conversation(untied, probes):
    prompt_probe, _ = probes
    value = expected_reward(untied, prompt_probe, [HISTORY])[0]
    ids = prompt_token_ids(untied.tokenizer, HISTORY)
    with torch.no_grad():
        hidden = untied.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[int(prompt_probe.info["layer"])][0, -1]
    assert value == pytest.approx(prompt_probe.predict(hidden.numpy()[None])[0], rel=1e-4, abs=1e-4)
    assert prompt_probe.info["position"] == "assistant_start"


def test_conversation_measures_on_the_tiny_model(untied, probes, tmp_path):
    prompt_probe, response_probe = probes
    prompts = [[{"role": "user", "content": f"question {i}: the quick brown fox"}] for i in range(4)]
    config = ConversationConfig(samples=2, user_samples=2, max_new_tokens=6, user_max_new_tokens=5, n_boot=100)
    result, tables = conversation(untied, prompt_probe, prompts, [None, "paris", None, "dog"], config, response_probe)
    replies = tables["replies"]
    assert {"own greedy", "own sampled", "refusal", "redirect", "neutral", "data reply"} <= set(replies.kind)
    assert replies.expected_v.notna().any() and np.isfinite(replies.logprob).all() and (replies.logprob < 0).all()
    assert {m.name for m in result.behaviour} >= {"own greedy minus refusal", "redirect minus refusal"}
    probabilities = tables["follow_ups"][["accepts", "insists", "changes topic", "ends"]]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    assert result.caveats and json.loads(result.model_dump_json())["prompts"] == 4
    page = write_conversation_report(ConversationReport(result=result), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conversation.html", "conversation_v.png"]
    assert "data:image/png;base64," in page.read_text() and "redirect minus refusal" in page.read_text()


def test_paired_measures_find_a_planted_difference_and_not_a_null():
    import pandas as pd

    rng = np.random.default_rng(0)
    assert paired("planted", pd.Series(0.5 + rng.normal(size=60)), 500, 0).value.above(0)
    null = paired("null", pd.Series(rng.normal(size=60)), 500, 1).value
    assert null.low < 0 < null.high


def test_refusal_style_heuristic():
    assert refusal_style("Sure, here is how.") == "compliance"
    assert refusal_style("I'm sorry, but I can't help with that.") == "refusal"
    assert refusal_style("I can't help with that, but I can suggest a safer option instead.") == "redirect"
