import numpy as np
import pytest
import torch

from latent_reward.experiments.generate import generate_with_estimates
from latent_reward.models.chat import prompt_token_ids
from latent_reward.probes import RidgeProbe


def test_generated_estimates_match_a_direct_forward(tiny):
    rng = np.random.default_rng(0)
    probe = RidgeProbe(alpha_factor=1.0).fit(rng.normal(size=(40, 32)), rng.normal(size=40))
    probe.info.layer, probe.info.position = 2, "response_last"
    messages = [{"role": "user", "content": "what is two plus two?"}]
    reply = generate_with_estimates(tiny, probe, messages, max_new_tokens=6)
    assert 1 <= len(reply.ids) == len(reply.tokens) == len(reply.estimates) <= 6
    prompt_ids = prompt_token_ids(tiny.tokenizer, messages)
    with torch.no_grad():
        out = tiny.model(torch.tensor([prompt_ids + reply.ids]), output_hidden_states=True)
    direct = probe.predict(out.hidden_states[2][0, len(prompt_ids) - 1 :].numpy())
    assert reply.before == pytest.approx(direct[0], rel=1e-4, abs=1e-4)
    np.testing.assert_allclose(reply.estimates, direct[1 : len(reply.estimates) + 1], rtol=1e-4, atol=1e-4)
    # greedy: each generated token is the argmax of the logits before it
    assert reply.ids == out.logits[0, len(prompt_ids) - 1 : -1].argmax(-1).tolist()
