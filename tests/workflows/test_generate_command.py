"""`generate` through its workflow (`lr.generate`): the probe's model is loaded from what the probe records, tokens
stream with their estimates, and the lens page is written."""

import numpy as np
import pytest

import latent_reward as lr
from latent_reward.config import ModelSpec
from latent_reward.errors import UserError
from latent_reward.experiments.generate import Generation, generate_with_estimates
from latent_reward.probes import Probe


def test_generate_streams_the_probes_estimates_and_writes_the_lens_page(tiny_probe_folder, tiny_model_dir, tmp_path):
    streamed = []
    reply = lr.generate(
        "what is two plus two?",
        tiny_probe_folder,
        max_new_tokens=5,
        html=tmp_path / "lens.html",
        on_token=lambda text, estimate: streamed.append((text, estimate)),
    )
    assert isinstance(reply, Generation) and 1 <= len(reply.ids) <= 5
    assert [t for t, _ in streamed] == reply.tokens
    np.testing.assert_allclose([e for _, e in streamed], reply.estimates, rtol=1e-6)
    loaded = ModelSpec(name=str(tiny_model_dir), dtype="float32").load()
    messages = [{"role": "user", "content": "what is two plus two?"}]
    direct = generate_with_estimates(loaded, Probe.load(tiny_probe_folder), messages, max_new_tokens=5)
    assert direct.ids == reply.ids and direct.before == pytest.approx(reply.before)
    np.testing.assert_allclose(direct.estimates, reply.estimates, rtol=1e-5)
    page = (tmp_path / "lens.html").read_text()
    words = [token.strip() for token in reply.tokens if token.strip().isalnum()]
    assert "what is two plus two?" in page and all(word in page for word in words)


def test_generate_refuses_a_probe_for_another_model(tiny_probe_folder, tmp_path):
    from helpers import tiny_loaded

    wider = tiny_loaded(d_model=48)
    wider.model.save_pretrained(tmp_path / "wide")
    wider.tokenizer.save_pretrained(tmp_path / "wide")
    with pytest.raises(UserError, match="another model"):
        lr.generate("hi", tiny_probe_folder, model=str(tmp_path / "wide"))
