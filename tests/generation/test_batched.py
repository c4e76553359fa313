"""The shared generation loop on the tiny model: batching, seeds, residual reads and interventions."""

import numpy as np
import pytest
import torch

from latent_reward.generation import GenerationConfig, Intervention, generate, generate_chat
from latent_reward.models.architecture import residual_hook
from latent_reward.models.chat import prompt_token_ids

CONVERSATIONS = [
    [{"role": "user", "content": text}]
    for text in (
        "what is two plus two?",
        "how do I cook pasta? boil water, add salt",
        "the quick brown fox",
        "Paris is the capital of",
    )
]


def one_at_a_time_greedy(tiny, prompt: list[int], steps: int) -> list[int]:
    """A reference loop without a cache: the argmax of a full forward at every step."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(tiny.model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def test_batched_greedy_matches_a_plain_loop_and_batch_size_does_not_matter(tiny):
    config = GenerationConfig(max_new_tokens=6)
    batched = generate_chat(tiny, CONVERSATIONS, config)
    single = generate_chat(tiny, CONVERSATIONS, config.model_copy(update={"batch_size": 1}))
    for conversation, a, b in zip(CONVERSATIONS, batched, single):
        assert a.ids == b.ids
        reference = one_at_a_time_greedy(
            tiny, prompt_token_ids(tiny.tokenizer, conversation), len(a.ids) + (a.stop == "eos")
        )
        assert a.ids == reference[: len(a.ids)]
        assert a.stop in ("eos", "length") and (a.stop == "eos" or len(a.ids) == 6)


def test_sampling_is_seeded_per_sequence(tiny):
    config = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=3)
    full = generate_chat(tiny, CONVERSATIONS, config)
    again = generate_chat(tiny, CONVERSATIONS, config)
    assert [r.ids for r in full] == [r.ids for r in again]
    alone = generate(tiny, [prompt_token_ids(tiny.tokenizer, CONVERSATIONS[2])], config, first_index=2)
    assert alone[0].ids == full[2].ids  # the same sequence gets the same tokens without its batch mates
    other = generate_chat(tiny, CONVERSATIONS, config.model_copy(update={"seed": 4}))
    assert [r.ids for r in other] != [r.ids for r in full]


def test_reads_give_the_state_at_the_prompt_end_and_at_every_token(tiny):
    reply = generate_chat(tiny, CONVERSATIONS[:1], GenerationConfig(max_new_tokens=5), read_layer=2)[0]
    prompt = prompt_token_ids(tiny.tokenizer, CONVERSATIONS[0])
    with torch.no_grad():
        hidden = tiny.model(torch.tensor([prompt + reply.ids]), output_hidden_states=True).hidden_states[2][0]
    assert reply.states.shape == (len(reply.ids) + 1, 32)
    np.testing.assert_allclose(reply.states, hidden[len(prompt) - 1 :].numpy(), rtol=1e-4, atol=1e-4)


def test_an_added_vector_lands_exactly_on_the_generated_positions(tiny):
    vector = np.linspace(-1, 1, 32).astype(np.float32)
    plain = generate_chat(tiny, CONVERSATIONS[:1], GenerationConfig(max_new_tokens=4))[0]
    zero = generate_chat(
        tiny, CONVERSATIONS[:1], GenerationConfig(max_new_tokens=4), interventions=(Intervention(2, 0 * vector),)
    )[0]
    assert zero.ids == plain.ids  # strength 0 is unsteered generation, token for token
    steered = generate_chat(
        tiny,
        CONVERSATIONS[:1],
        GenerationConfig(max_new_tokens=4),
        read_layer=2,
        interventions=(Intervention(1, vector, scope="generated"),),
    )[0]
    # the same tokens teacher-forced, with the vector added at residual 1 on the generated positions only
    prompt = prompt_token_ids(tiny.tokenizer, CONVERSATIONS[0])
    start = len(prompt)

    def add_after_prompt(hidden):
        shifted = hidden.clone()
        shifted[:, start:] += torch.as_tensor(vector)
        return shifted

    handle = residual_hook(tiny.model, 1, add_after_prompt)
    try:
        with torch.no_grad():  # hidden_states[2] is residual 2 (only the last entry is after the final norm)
            hidden = tiny.model(torch.tensor([prompt + steered.ids]), output_hidden_states=True).hidden_states[2][0]
    finally:
        handle.remove()
    np.testing.assert_allclose(steered.states, hidden[start - 1 :].numpy(), rtol=1e-4, atol=1e-4)


def test_ablation_leaves_no_component_along_the_direction(tiny):
    direction = np.random.default_rng(0).normal(size=32).astype(np.float32)
    unit = direction / np.linalg.norm(direction)
    reply = generate_chat(
        tiny,
        CONVERSATIONS[:2],
        GenerationConfig(max_new_tokens=4),
        read_layer=1,
        interventions=(Intervention(1, direction, kind="ablate", scope="all"),),
    )
    for r in reply:
        assert np.abs(r.states @ unit).max() < 1e-4


@pytest.mark.parametrize("scope", ["generated", "all"])
def test_the_read_state_includes_an_addition_at_the_same_layer(tiny, scope):
    vector = np.full(32, 0.5, dtype=np.float32)
    base = generate_chat(tiny, CONVERSATIONS[:1], GenerationConfig(max_new_tokens=1), read_layer=1)[0]
    moved = generate_chat(
        tiny,
        CONVERSATIONS[:1],
        GenerationConfig(max_new_tokens=1),
        read_layer=1,
        interventions=(Intervention(1, vector, scope=scope),),
    )[0]
    shift = moved.states[0] - base.states[0]  # the prompt's last token
    np.testing.assert_allclose(shift, vector if scope == "all" else 0.0, atol=1e-5)


def test_a_prompt_cache_shared_by_conditions_gives_the_same_replies_and_read_backs(tiny, monkeypatch):
    """Steer's conditions share each prompt's unsteered pass: the replies, their NLL and the steered KL equal those
    of running every prompt again, and the prompts run once however many conditions follow."""
    from latent_reward.generation import batched
    from latent_reward.generation.teacher_forced import read_back

    prompts = [prompt_token_ids(tiny.tokenizer, c) for c in CONVERSATIONS]
    vector = np.linspace(-2, 2, 32).astype(np.float32)
    conditions = [(), (Intervention(1, vector, scope="generated"),), (Intervention(2, -vector, scope="generated"),)]
    config = GenerationConfig(max_new_tokens=6, batch_size=3)
    prefills = []
    real_prefill = batched._prefill
    monkeypatch.setattr(
        batched, "_prefill", lambda model, p, reads: prefills.append(len(p)) or real_prefill(model, p, reads)
    )
    shared = batched.PromptCache(tiny.model)
    for steer in conditions:
        fresh = generate(tiny, prompts, config, interventions=steer)
        reused = generate(tiny, prompts, config, interventions=steer, prompt_cache=shared)
        assert [r.ids for r in reused] == [r.ids for r in fresh]
        replies = [r.ids for r in fresh]
        again, cached = read_back(tiny, prompts, replies, steer), read_back(tiny, prompts, replies, steer, 3, shared)
        for a, b in zip(cached, again):
            assert a.nll == pytest.approx(b.nll, rel=1e-5, abs=1e-6) and a.kl == pytest.approx(b.kl, rel=1e-4, abs=1e-6)
        if steer:
            assert (
                max(b.kl for b in again) > 1e-3
            )  # the vector moves the distributions: the KL comparison means something
    # each uncached generate prefilled every prompt; the cache prefilled each prompt once for all conditions
    assert sum(prefills) == len(prompts) * len(conditions) + len(prompts)
    scoped_all = (Intervention(1, vector, scope="all"),)  # a steered prompt pass cannot be shared: run afresh
    assert [r.ids for r in generate(tiny, prompts, config, interventions=scoped_all, prompt_cache=shared)] == [
        r.ids for r in generate(tiny, prompts, config, interventions=scoped_all)
    ]


def test_read_back_reads_whole_sequences_for_a_model_that_scales_its_logits(tiny, monkeypatch):
    """The cache's first-token logits come from the model's own forward, later ones from the LM head alone: for a
    model that scales its logits (Cohere's logit_scale, Granite's logits_scaling) the two would not match."""
    from latent_reward.generation import batched
    from latent_reward.generation.teacher_forced import read_back

    prompts = [prompt_token_ids(tiny.tokenizer, c) for c in CONVERSATIONS[:2]]
    shared = batched.PromptCache(tiny.model)
    monkeypatch.setattr(tiny.model.config, "logit_scale", 0.5, raising=False)
    read_back(tiny, prompts, [[5, 6, 7], [8, 9]], prompt_cache=shared)
    assert not shared._rows  # never consulted
    monkeypatch.setattr(tiny.model.config, "logit_scale", None)
    read_back(tiny, prompts, [[5, 6, 7], [8, 9]], prompt_cache=shared)
    assert len(shared._rows) == 2
