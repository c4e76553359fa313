"""Online-RL rewards (training/rewards.py): a saved probe read on its own model, a judge behind the scripted server,
a user's function, and the one-line errors around them."""

import numpy as np
import pytest

from helpers import ChatServer, completion, rating_json
from latent_reward.activations.tokens import position_states
from latent_reward.config import ModelSpec
from latent_reward.errors import UserError
from latent_reward.judging.client import Endpoint
from latent_reward.probes import Probe
from latent_reward.training.rewards import judge_reward, make_reward, probe_reward

PROMPTS = [[{"role": "user", "content": "what is two plus two?"}], [{"role": "user", "content": "the quick brown fox"}]]
COMPLETIONS = [
    [{"role": "assistant", "content": "it is four"}],
    [{"role": "assistant", "content": "jumps over the dog"}],
]


def test_a_probe_reward_is_the_probes_reading_of_prompt_and_completion(tiny_probe_folder, tiny_model_dir):
    reward = probe_reward(tiny_probe_folder)
    values = reward(PROMPTS, COMPLETIONS)
    probe = Probe.load(tiny_probe_folder)
    loaded = ModelSpec(name=str(tiny_model_dir), dtype="float32").load()
    conversations = [[*p, *c] for p, c in zip(PROMPTS, COMPLETIONS)]
    expected = probe.predict(position_states(loaded, conversations, *probe.info.cell(), probe.info.max_tokens))
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    assert values[0] != pytest.approx(values[1])  # the completion is read, not only the prompt's states
    plain = reward([p[0]["content"] for p in PROMPTS], [c[0]["content"] for c in COMPLETIONS])  # TRL's plain-text form
    np.testing.assert_allclose(plain, values, rtol=1e-6)
    assert reward.__name__ == f"probe_{tiny_probe_folder.name}"


def test_a_judge_reward_is_the_judges_score_and_a_malformed_answer_gets_the_batch_mean(tmp_path):
    def reply(body, count):
        text = body["messages"][-1]["content"]
        if "unratable" in text:
            return 200, completion("no idea"), None, 0  # malformed every time
        return 200, completion(rating_json(8 if "four" in text else 3)), None, 0

    server = ChatServer(reply)
    try:
        reward = judge_reward(Endpoint(base_url=server.url, model="grader"), tmp_path)
        completions = [*COMPLETIONS, [{"role": "assistant", "content": "unratable"}]]
        values = reward([*PROMPTS, PROMPTS[0]], completions)
        sent = len(server.requests)
        assert reward([*PROMPTS, PROMPTS[0]], completions) == values and len(server.requests) == sent  # cached
    finally:
        server.close()
    assert values == [8.0, 3.0, 5.5]
    assert {r["model"] for r in server.requests} == {"grader"}


def length(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def too_few(prompts, completions, **kwargs):
    return [1.0]


def broken(prompts, completions, **kwargs):
    raise KeyError("score")


def test_make_reward_dispatches_and_turns_failures_into_one_line(tiny_probe_folder, tmp_path):
    assert make_reward(f"{__name__}:length", None, tmp_path)(["p", "q"], ["ab", "abcd"]) == [2.0, 4.0]
    assert make_reward(str(tiny_probe_folder), None, tmp_path).__name__ == f"probe_{tiny_probe_folder.name}"
    assert (
        make_reward("judge", Endpoint(base_url="http://127.0.0.1:9/v1", model="grader"), tmp_path).__name__ == "judge"
    )
    with pytest.raises(UserError, match="needs the judge's endpoint"):
        make_reward("judge", None, tmp_path)
    with pytest.raises(UserError, match="returned 1 values for 2 completions"):
        make_reward(f"{__name__}:too_few", None, tmp_path)(["p", "q"], ["a", "b"])
    with pytest.raises(UserError, match="failed: KeyError"):
        make_reward(f"{__name__}:broken", None, tmp_path)(["p"], ["a"])
    with pytest.raises(UserError, match="cannot import the reward"):
        make_reward(f"{__name__}:missing", None, tmp_path)
    with pytest.raises(UserError, match="--reward must be"):
        make_reward(str(tmp_path / "no-such-folder"), None, tmp_path)


def test_a_probe_that_reads_the_prompt_is_refused_as_a_reward(tiny_probe_folder, tmp_path):
    """Read at assistant_start, a probe gives every completion of a prompt the same reward: RLOO's advantages would all
    be zero, so it is refused with one line."""
    probe = Probe.load(tiny_probe_folder)
    probe.info.position = "assistant_start"
    with pytest.raises(UserError, match="reads assistant_start, before the response"):
        probe_reward(probe.save(tmp_path / "prompt_probe"))
