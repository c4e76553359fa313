"""Steering as an API: `lr.steering` adds a SteeringVector at its layer while any generate runs (the steer experiment's
hooks), nothing is left behind on exit, and a probe's direction is exported with its layer and strength unit."""

import numpy as np
import pytest
import torch

import latent_reward as lr
from helpers import planted_store, tiny_loaded
from latent_reward.errors import UserError
from latent_reward.generation import GenerationConfig, SteeringVector, generate_chat
from latent_reward.models.architecture import decoder_layers, residual_hook
from latent_reward.models.chat import prompt_token_ids

CONVERSATIONS = [
    [{"role": "user", "content": "what is two plus two?"}],
    [{"role": "user", "content": "the quick brown fox"}],
]


def residuals(loaded, ids: list[int]) -> list[np.ndarray]:
    """Residual 0..n_layers of one forward pass, [tokens, d] each, as a hook registered last sees them (transformers'
    own hidden_states are recorded before other hooks change a block's output)."""
    seen: dict[int, np.ndarray] = {}

    def keep(layer: int):
        return lambda hidden: seen.__setitem__(layer, hidden[0].numpy().copy())

    handles = [residual_hook(loaded.model, layer, keep(layer)) for layer in range(loaded.info.n_layers + 1)]
    try:
        with torch.no_grad():
            loaded.model(torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()
    return [seen[layer] for layer in range(loaded.info.n_layers + 1)]


def unit_vector(d: int, seed: int = 0) -> np.ndarray:
    direction = np.random.default_rng(seed).normal(size=d)
    return direction / np.linalg.norm(direction)


def test_steering_adds_strength_times_unit_at_its_layer_only_while_inside(tiny):
    ids = prompt_token_ids(tiny.tokenizer, CONVERSATIONS[0])
    vector = SteeringVector(unit_vector(tiny.info.d_model), layer=2, unit=3.0)
    base = residuals(tiny, ids)
    with lr.steering(tiny, vector, strength=2.0):
        steered = residuals(tiny, ids)
    np.testing.assert_allclose(steered[2] - base[2], np.tile(6.0 * vector.direction, (len(ids), 1)), atol=1e-5)
    np.testing.assert_array_equal(steered[1], base[1])  # the layer below is untouched
    assert np.abs(steered[3] - base[3]).max() > 0.1  # and the push travels up
    for before, after in zip(base, residuals(tiny, ids)):  # gone on exit
        np.testing.assert_array_equal(before, after)
    with lr.steering(tiny.model, vector, strength=1.0, layers=(0, 3)):  # a bare torch model, other layers
        several = residuals(tiny, ids)
    np.testing.assert_allclose(several[0] - base[0], np.tile(3.0 * vector.direction, (len(ids), 1)), atol=1e-5)

    def hooks() -> list[tuple]:  # transformers may keep hooks of its own on the blocks: compare, not count
        return [(tuple(b._forward_hooks), tuple(b._forward_pre_hooks)) for b in decoder_layers(tiny.model)]

    before = hooks()
    with pytest.raises(RuntimeError, match="inside"), lr.steering(tiny, vector, strength=5.0):
        assert hooks() != before
        raise RuntimeError("inside")
    assert hooks() == before  # removed after an error too


def test_generated_scope_steers_like_the_steer_experiment_in_both_generate_loops():
    loaded = tiny_loaded(tie=False)  # untied: greedy replies vary with the state
    vector = SteeringVector(unit_vector(loaded.info.d_model, seed=1), layer=1, unit=2.0)
    config = GenerationConfig(max_new_tokens=6)
    plain = generate_chat(loaded, CONVERSATIONS, config)
    pushed = (vector.intervention(8.0, scope="generated"),)
    experiment = generate_chat(loaded, CONVERSATIONS, config, interventions=pushed)
    assert [r.ids for r in experiment] != [r.ids for r in plain]  # the push changes the replies
    with lr.steering(loaded, vector, strength=8.0, scope="generated"):
        inside = generate_chat(loaded, CONVERSATIONS, config)
        prompt = prompt_token_ids(loaded.tokenizer, CONVERSATIONS[0])
        with torch.no_grad():
            mask = torch.ones(1, len(prompt), dtype=torch.long)
            output = loaded.model.generate(
                torch.tensor([prompt]),
                attention_mask=mask,
                max_new_tokens=6,
                do_sample=False,
                pad_token_id=loaded.tokenizer.pad_token_id,
            )
    transformers_ids = output[0, len(prompt) :].tolist()
    assert [r.ids for r in inside] == [r.ids for r in experiment]
    assert transformers_ids[: len(experiment[0].ids)] == experiment[0].ids  # transformers' own cached generate too


def test_a_steering_vector_exports_and_round_trips(tmp_path):
    vector = SteeringVector(unit_vector(8), layer=3, unit=0.5, position="eot", model="m")
    np.testing.assert_allclose(vector.numpy(4.0), 2.0 * vector.direction, rtol=1e-6)
    assert vector.torch(4.0, dtype=torch.float64).dtype == torch.float64
    np.testing.assert_allclose(vector.torch(-1.0).numpy(), -0.5 * vector.direction, rtol=1e-6)
    again = SteeringVector.load(vector.save(tmp_path / "v.safetensors"))
    assert (again.layer, again.unit, again.position, again.model) == (3, 0.5, "eot", "m")
    np.testing.assert_allclose(again.direction, vector.direction, rtol=1e-6)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="not a saved steering vector"):
        SteeringVector.load(tmp_path / "junk.safetensors")


def test_a_probes_steering_vector_has_the_experiments_direction_and_unit(tmp_path):
    store = planted_store(tmp_path / "store")
    probe = lr.sweep(store, lr.SweepConfig(n_boot=100), progress=False).best_probe
    layer = probe.info.layer
    vector = lr.steering_vector(probe, store)
    assert vector.layer == layer and vector.position == probe.info.position == "eot"
    np.testing.assert_allclose(vector.direction, probe.direction, rtol=1e-5, atol=1e-6)
    states = store.array("eot", [layer]).astype(np.float32)[:, 0]
    assert vector.unit == pytest.approx(float(np.std(states.astype(np.float64) @ vector.direction)), rel=1e-5)
    recorded = lr.steering_vector(probe)  # the store the probe records
    assert recorded.unit == pytest.approx(vector.unit)
    elsewhere = lr.steering_vector(probe, store, layer=1)  # refitted on the probe's training prompts at layer 1
    assert elsewhere.layer == 1 and np.linalg.norm(elsewhere.direction) == pytest.approx(1.0, abs=1e-6)
    probe.info.store = None
    assert lr.steering_vector(probe).unit == 1.0
    with pytest.raises(UserError, match="pass store="):
        lr.steering_vector(probe, layer=1)
