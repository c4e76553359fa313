"""The shared rated files in ../shared/data load with the counts their README gives."""

import json

import pytest

from helpers import SHARED_DATA, needs_shared_data
from latent_reward.data import load_dataset

pytestmark = [pytest.mark.integration, needs_shared_data()]


@pytest.mark.parametrize(
    "name, format, examples, groups, skipped",
    [
        ("ultrafeedback_binarized_subset_1200.jsonl", "ultrafeedback-binarized", 2398, 1200, {"empty response": 2}),
        ("arena_bench_v1_gpt4_scores.jsonl.gz", "arena", 4733, 300, {"empty response": 27}),
        ("rewardbench_bon_tulu2dpo13b_n16.jsonl.gz", "alpacaeval", 8855, 805, {"missing rating": 4025}),
        ("preference_pairs_llmbar_mtbench.jsonl", "pairs", 1238, 493, {}),
        (
            "hh_rlhf_harmless_base_test.jsonl.gz",
            "hh-rlhf",
            4606,
            2301,
            {"empty response": 4, "pair with one side unusable": 4},
        ),
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
    assert chosen.messages == [
        {"role": "user", "content": first["prompt"]},
        {"role": "assistant", "content": first["chosen"]},
    ]
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


def test_prompts_option_keeps_whole_prompts():
    dataset = load_dataset(str(SHARED_DATA / "arena_bench_v1_gpt4_scores.jsonl.gz"), prompts=3)
    groups = {e.group for e in dataset.examples}
    assert len(groups) == 3
    everything = load_dataset(str(SHARED_DATA / "arena_bench_v1_gpt4_scores.jsonl.gz"))
    assert len(dataset.examples) == sum(e.group in groups for e in everything.examples) >= 3 * 13
