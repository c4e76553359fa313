"""probes/reader.py: a saved probe read on new conversations, checked against a plain forward of each whole
conversation (the reader uses the extraction's two-pass forward)."""

import numpy as np

from helpers import direct_states
from latent_reward.positions import BY_NAME
from latent_reward.probes import Probe
from latent_reward.probes.reader import ProbeReader

CONVERSATIONS = [
    [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    for prompt, reply in (
        ("what is two plus two?", "it is four"),
        ("the quick brown fox", "jumps over it"),
        ("what is two plus two?", "five, sadly"),
    )
]


def direct_state(loaded, conversation, position: str, layer: int) -> np.ndarray:
    """The state at `position` and residual index `layer`, from one plain forward of the whole conversation."""
    rendered, states, _ = direct_states(loaded, conversation)
    where = BY_NAME[position].rule(rendered.spans)
    return states[where, layer] if isinstance(where, int) else states[where[0] : where[1], layer].mean(0)


def test_the_reader_gives_the_probes_estimate_at_its_position_and_layer(tiny, tiny_probe_folder):
    probe = Probe.load(tiny_probe_folder)
    reader = ProbeReader(probe, tiny)
    values = reader.read(CONVERSATIONS)
    info = probe.info  # short conversations: no token budget cuts them
    states = np.stack([direct_state(tiny, c, info.position, info.layer) for c in CONVERSATIONS])
    np.testing.assert_allclose(values, probe.predict(states), rtol=1e-4, atol=1e-4)
    assert len(set(np.round(values, 6))) == 3  # each reply read on its own (the two to one prompt differ)
    assert reader.read([]).shape == (0,)  # no conversation (e.g. every reply empty): no forward


def test_read_prompts_is_the_state_where_the_assistant_starts(tiny, tiny_probe_folder):
    probe = Probe.load(tiny_probe_folder)
    prompts = [c[:1] for c in CONVERSATIONS[:2]]
    layer = probe.info.layer
    expected = probe.predict(np.stack([direct_state(tiny, c, "assistant_start", layer) for c in CONVERSATIONS[:2]]))
    np.testing.assert_allclose(ProbeReader(probe, tiny).read_prompts(prompts), expected, rtol=1e-4, atol=1e-4)


def test_read_prompts_with_shared_histories_equals_a_pass_per_conversation(tiny, tiny_probe_folder):
    probe = Probe.load(tiny_probe_folder)
    conversations = [[*c, {"role": "user", "content": turn}] for c in CONVERSATIONS for turn in ("why?", "thanks!")]
    layer = probe.info.layer
    answered = [[*c, {"role": "assistant", "content": "ok"}] for c in conversations]  # assistant_start is before it
    expected = probe.predict(np.stack([direct_state(tiny, c, "assistant_start", layer) for c in answered]))
    np.testing.assert_allclose(ProbeReader(probe, tiny).read_prompts(conversations), expected, rtol=1e-4, atol=1e-4)
