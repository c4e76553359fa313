"""The contract every registered data format keeps (parametrised over `FORMATS`): a tiny file in its published shape is
recognised as that format, loads into Examples, loads the same when the format is forced, and round-trips through
latent-reward's own format unchanged. A format added to the registry without a sample here fails the first test."""

import pytest

from helpers import write_jsonl
from latent_reward.data import detect_format, load_dataset
from latent_reward.data.formats import FORMATS, LOADERS
from latent_reward.errors import UserError

USER, ASSISTANT = "user", "assistant"


def turns(*texts: str) -> list[dict]:
    return [{"role": USER if i % 2 == 0 else ASSISTANT, "content": text} for i, text in enumerate(texts)]


SAMPLES = {
    "latent-reward": [
        {
            "id": "a:0",
            "group": "g0",
            "rating": 7.0,
            "aspects": {"honesty": 4.0},
            "meta": {"generator": "m"},
            "messages": turns("Hi?", "Hello."),
        },
        {"id": "a:1", "group": "g0", "rating": 3.0, "aspects": {}, "meta": {}, "messages": turns("Hi?", "Go.")},
    ],
    "ultrafeedback": [
        {
            "instruction": "Name a prime.",
            "completions": [
                {"model": "m1", "response": "7", "overall_score": 8.5, "annotations": {"helpfulness": {"Rating": "4"}}},
                {"model": "m2", "response": "9", "overall_score": 2.0, "annotations": {}},
            ],
        }
    ],
    "ultrafeedback-binarized": [
        {
            "prompt": "Hi",
            "prompt_id": "x",
            "score_chosen": 9.0,
            "score_rejected": 3.0,
            "chosen": turns("Hi", "Hello!"),
            "rejected": turns("Hi", "No."),
        }
    ],
    "helpsteer2": [
        {
            "prompt": "Question",
            "response": "Answer",
            "helpfulness": 3,
            "correctness": 4,
            "coherence": 4,
            "complexity": 1,
            "verbosity": 2,
        }
    ],
    "arena": [
        {"question": "Why?", "answer": "Because.", "score": 6, "model": "m"},
        {"question": "Why?", "answer": "No idea.", "score": 2, "model": "n"},
    ],
    "alpacaeval": [
        {"instruction": "Write a poem.", "output": "Roses...", "generator": "m", "p_win_vs_reference": 0.7},
        {"instruction": "Write a poem.", "output": "No.", "generator": "n", "preference": 1.2},
    ],
    "hh-rlhf": [
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello, how can I help?",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
        }
    ],
    "pairs": [{"prompt": "Q", "chosen": "good", "rejected": "bad", "chosen_model": "a", "rejected_model": "b"}],
}


def test_every_registered_format_has_a_sample_and_a_unique_priority():
    assert set(SAMPLES) == set(LOADERS) == {f.name for f in FORMATS}
    assert len({f.priority for f in FORMATS}) == len(FORMATS)


@pytest.mark.parametrize("name", list(LOADERS))
def test_every_loader_round_trips_a_tiny_file(name, tmp_path):
    path = str(write_jsonl(tmp_path / f"{name}.jsonl", SAMPLES[name]))
    assert detect_format(SAMPLES[name][0]) == name
    dataset = load_dataset(path)
    assert dataset.format == name and dataset.examples
    assert load_dataset(path, format=name).examples == dataset.examples
    for example in dataset.examples:
        assert example.messages[-1]["role"] == "assistant" and example.response.strip() and example.prompt_messages
        assert isinstance(example.rating, float) and example.group
    native = str(write_jsonl(tmp_path / "native.jsonl", [e.to_record() for e in dataset.examples]))
    again = load_dataset(native)
    assert again.format == "latent-reward" and again.examples == dataset.examples


def test_detection_follows_priority_where_rules_overlap():
    """A record can satisfy several rules; the higher priority (more specific) format wins."""
    assert (
        detect_format({"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 2})
        == "ultrafeedback-binarized"
    )
    assert detect_format({"prompt": "Human: hi", "chosen": "a", "rejected": "b"}) == "hh-rlhf"
    with pytest.raises(UserError, match="cannot tell the data format"):
        detect_format({"instruction": "i", "output": "o"})  # alpacaeval needs a preference or a win probability
