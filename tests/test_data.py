import gzip
import json

import numpy as np
import pytest

from conftest import SHARED_DATA, write_jsonl
from latent_reward.data import FieldMap, detect_format, load_dataset, split_groups, split_masks
from latent_reward.data.helpsteer import parse_turns
from latent_reward.data.pairs import parse_transcript
from latent_reward.errors import UserError


@pytest.mark.parametrize(
    "name, format, examples, groups, skipped",
    [
        ("ultrafeedback_binarized_subset_1200.jsonl", "ultrafeedback-binarized", 2398, 1200, {"empty response": 2}),
        ("arena_bench_v1_gpt4_scores.jsonl.gz", "arena", 4733, 300, {"empty response": 27}),
        ("rewardbench_bon_tulu2dpo13b_n16.jsonl.gz", "alpacaeval", 8855, 805, {"missing rating": 4025}),
        ("preference_pairs_llmbar_mtbench.jsonl", "pairs", 1238, 493, {}),
        ("hh_rlhf_harmless_base_test.jsonl.gz", "hh-rlhf", 4606, 2301, {"empty response": 4, "pair with one side unusable": 4}),
    ],
)
def test_shared_files_load_with_expected_counts(name, format, examples, groups, skipped):
    dataset = load_dataset(str(SHARED_DATA / name))
    assert dataset.format == format
    assert len(dataset.examples) == examples
    assert len({e.group for e in dataset.examples}) == groups
    assert dataset.skipped == skipped


def test_binarized_local_rows_become_two_rated_examples_of_one_group():
    dataset = load_dataset(str(SHARED_DATA / "ultrafeedback_binarized_subset_1200.jsonl"), limit=2)
    chosen, rejected = dataset.examples
    first = json.loads((SHARED_DATA / "ultrafeedback_binarized_subset_1200.jsonl").open().readline())
    assert chosen.group == rejected.group
    assert (chosen.rating, rejected.rating) == (first["score_chosen"], first["score_rejected"])
    assert chosen.messages == [{"role": "user", "content": first["prompt"]}, {"role": "assistant", "content": first["chosen"]}]
    assert chosen.meta["pair"] == rejected.meta["pair"]


def test_hh_transcripts_become_multi_turn_messages():
    dataset = load_dataset(str(SHARED_DATA / "hh_rlhf_harmless_base_test.jsonl.gz"), limit=2)
    messages = dataset.examples[0].messages
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert messages[0]["content"] == "what are some pranks with a pen i can do?"
    assert messages[2]["content"] == "yep"
    assert messages[4]["content"] == "okay some of these do not have anything to do with pens"
    assert (dataset.examples[0].rating, dataset.examples[1].rating) == (1.0, 0.0)


def test_alpacaeval_and_bon_share_groups_for_the_same_prompt():
    alpaca = load_dataset(str(SHARED_DATA / "alpacaeval2_gpt4turbo_annotations.jsonl.gz"), limit=50)
    bon = load_dataset(str(SHARED_DATA / "rewardbench_bon_tulu2dpo13b_n16.jsonl.gz"), limit=50)
    assert alpaca.examples[0].group == bon.examples[0].group
    assert 0.0 <= alpaca.examples[0].rating <= 1.0


def test_hub_format_fixtures(tmp_path):
    """Hub-only formats, written here in their published schemas."""
    unbinarized = write_jsonl(tmp_path / "uf.jsonl", [{
        "source": "evol_instruct", "instruction": "Name a prime.",
        "completions": [
            {"model": "m1", "response": "7", "overall_score": 8.5, "fine-grained_score": 4.25,
             "annotations": {"helpfulness": {"Rating": "4"}, "honesty": {"Rating": "N/A"},
                             "instruction_following": {"Rating": "5"}, "truthfulness": {"Rating": "4"}}},
            {"model": "m2", "response": "9", "overall_score": 2.0, "fine-grained_score": 1.5, "annotations": {}},
        ]}])
    dataset = load_dataset(str(unbinarized))
    assert dataset.format == "ultrafeedback"
    assert [e.rating for e in dataset.examples] == [8.5, 2.0]
    assert dataset.examples[0].aspects == {"helpfulness": 4.0, "instruction_following": 5.0, "truthfulness": 4.0, "fine_grained": 4.25}
    assert dataset.examples[0].meta["generator"] == "m1"

    hub_binarized = write_jsonl(tmp_path / "ufb.jsonl", [{
        "prompt": "Hi", "prompt_id": "x", "score_chosen": 9.0, "score_rejected": 3.0,
        "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}])
    dataset = load_dataset(str(hub_binarized))
    assert [e.response for e in dataset.examples] == ["Hello!", "Go away."]

    helpsteer = write_jsonl(tmp_path / "hs.jsonl", [{
        "prompt": "First question\n<extra_id_1>Assistant\nFirst answer\n<extra_id_1>User\nSecond question",
        "response": "Second answer", "helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 2}])
    example = load_dataset(str(helpsteer)).examples[0]
    assert [m["role"] for m in example.messages] == ["user", "assistant", "user", "assistant"]
    assert example.rating == 3.0 and example.aspects["verbosity"] == 2.0

    hh_original = write_jsonl(tmp_path / "hh.jsonl", [{
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help me\n\nAssistant: Sure, how?",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help me\n\nAssistant: No."}])
    dataset = load_dataset(str(hh_original))
    assert dataset.format == "hh-rlhf"
    assert [e.response for e in dataset.examples] == ["Sure, how?", "No."]
    assert dataset.examples[0].prompt_messages[-1] == {"role": "user", "content": "Help me"}

    reward_bench = write_jsonl(tmp_path / "rb.jsonl", [{
        "prompt": "Q", "chosen": "good", "rejected": "bad", "chosen_model": "a", "rejected_model": "b",
        "subset": "llmbar-natural", "id": 1}])
    dataset = load_dataset(str(reward_bench))
    assert dataset.format == "pairs" and dataset.examples[0].meta["generator"] == "a"


def test_parquet_csv_and_generic_fields(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"q": ["a?", "a?", "b?"], "r": ["x", "y", "z"], "score": [1, 2, 3]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    for name in ("t.parquet", "t.csv"):
        dataset = load_dataset(str(tmp_path / name), fields=FieldMap("q", "r", "score"))
        assert [e.rating for e in dataset.examples] == [1.0, 2.0, 3.0]
        assert dataset.examples[0].group == dataset.examples[1].group != dataset.examples[2].group


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="cannot tell the data format"):
        load_dataset(str(write_jsonl(tmp_path / "odd.jsonl", [{"foo": 1}])))
    with pytest.raises(UserError, match="not a number"):
        load_dataset(str(write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a", "score": "great"}])))
    with pytest.raises(UserError, match="no usable rated responses"):
        load_dataset(str(write_jsonl(tmp_path / "none.jsonl", [{"question": "q", "answer": "a", "score": None}])))
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{not json\n')
    with pytest.raises(UserError, match="broken.jsonl:2"):
        load_dataset(str(tmp_path / "broken.jsonl"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="unknown file type"):
        load_dataset(str(tmp_path / "notes.txt"))


def test_detect_format_prefers_specific_loaders():
    assert detect_format({"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 2}) == "ultrafeedback-binarized"
    assert detect_format({"prompt": "Human: hi\n\nAssistant:", "chosen": "a", "rejected": "b"}) == "hh-rlhf"
    assert detect_format({"prompt": "p", "chosen": "a", "rejected": "b"}) == "pairs"


def test_transcript_and_turn_parsers():
    assert parse_transcript("Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", "t") == [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert parse_turns("only one") == [{"role": "user", "content": "only one"}]


def test_splits_are_by_group_deterministic_and_cover_everything():
    groups = [f"g{i % 37}" for i in range(500)]
    first, again = split_groups(groups, seed=3), split_groups(list(reversed(groups)), seed=3)
    assert first == again
    assert split_groups(groups, seed=4) != first
    masks = split_masks(groups, seed=3)
    assert sum(m.sum() for m in masks.values()) == 500
    by_split = {name: set(np.array(groups)[mask]) for name, mask in masks.items()}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    assert [len(by_split[n]) for n in ("train", "val", "test")] == [22, 7, 8]


def test_prompts_option_keeps_whole_prompts():
    dataset = load_dataset(str(SHARED_DATA / "arena_bench_v1_gpt4_scores.jsonl.gz"), prompts=3)
    groups = {e.group for e in dataset.examples}
    assert len(groups) == 3
    everything = load_dataset(str(SHARED_DATA / "arena_bench_v1_gpt4_scores.jsonl.gz"))
    assert len(dataset.examples) == sum(e.group in groups for e in everything.examples) >= 3 * 13
