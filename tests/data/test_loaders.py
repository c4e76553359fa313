import json

import numpy as np
import pytest

from helpers import synthetic_examples, write_jsonl
from latent_reward.data import FieldMap, detect_format, load_dataset, split_groups, split_masks
from latent_reward.data.helpsteer import parse_turns
from latent_reward.data.pairs import parse_transcript
from latent_reward.data.splits import held_out_prompts
from latent_reward.errors import UserError


def test_hub_format_fixtures(tmp_path):
    """Hub-only formats, written here in their published schemas."""
    unbinarized = write_jsonl(
        tmp_path / "uf.jsonl",
        [
            {
                "source": "evol_instruct",
                "instruction": "Name a prime.",
                "completions": [
                    {
                        "model": "m1",
                        "response": "7",
                        "overall_score": 8.5,
                        "fine-grained_score": 4.25,
                        "annotations": {
                            "helpfulness": {"Rating": "4"},
                            "honesty": {"Rating": "N/A"},
                            "instruction_following": {"Rating": "5"},
                            "truthfulness": {"Rating": "4"},
                        },
                    },
                    {
                        "model": "m2",
                        "response": "9",
                        "overall_score": 2.0,
                        "fine-grained_score": 1.5,
                        "annotations": {},
                    },
                ],
            }
        ],
    )
    dataset = load_dataset(str(unbinarized))
    assert dataset.format == "ultrafeedback"
    assert [e.rating for e in dataset.examples] == [8.5, 2.0]
    assert dataset.examples[0].aspects == {
        "helpfulness": 4.0,
        "instruction_following": 5.0,
        "truthfulness": 4.0,
        "fine_grained": 4.25,
    }
    assert dataset.examples[0].meta["generator"] == "m1"

    hub_binarized = write_jsonl(
        tmp_path / "ufb.jsonl",
        [
            {
                "prompt": "Hi",
                "prompt_id": "x",
                "score_chosen": 9.0,
                "score_rejected": 3.0,
                "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}],
            }
        ],
    )
    dataset = load_dataset(str(hub_binarized))
    assert [e.response for e in dataset.examples] == ["Hello!", "Go away."]

    helpsteer = write_jsonl(
        tmp_path / "hs.jsonl",
        [
            {
                "prompt": "First question\n<extra_id_1>Assistant\nFirst answer\n<extra_id_1>User\nSecond question",
                "response": "Second answer",
                "helpfulness": 3,
                "correctness": 4,
                "coherence": 4,
                "complexity": 1,
                "verbosity": 2,
            }
        ],
    )
    example = load_dataset(str(helpsteer)).examples[0]
    assert [m["role"] for m in example.messages] == ["user", "assistant", "user", "assistant"]
    assert example.rating == 3.0 and example.aspects["verbosity"] == 2.0

    hh_original = write_jsonl(
        tmp_path / "hh.jsonl",
        [
            {
                "chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help me\n\nAssistant: Sure, how?",
                "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help me\n\nAssistant: No.",
            }
        ],
    )
    dataset = load_dataset(str(hh_original))
    assert dataset.format == "hh-rlhf"
    assert [e.response for e in dataset.examples] == ["Sure, how?", "No."]
    assert dataset.examples[0].prompt_messages[-1] == {"role": "user", "content": "Help me"}

    reward_bench = write_jsonl(
        tmp_path / "rb.jsonl",
        [
            {
                "prompt": "Q",
                "chosen": "good",
                "rejected": "bad",
                "chosen_model": "a",
                "rejected_model": "b",
                "subset": "llmbar-natural",
                "id": 1,
            }
        ],
    )
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


def test_split_picks_a_local_files_rows_by_its_split_field(tmp_path):
    rows = [{"question": f"q{i}", "answer": "a", "score": i, "split": "train" if i < 3 else "eval"} for i in range(5)]
    path = str(write_jsonl(tmp_path / "s.jsonl", rows))
    eval_rows = load_dataset(path, split="eval").examples
    assert [e.rating for e in eval_rows] == [3.0, 4.0] and {e.meta["source_split"] for e in eval_rows} == {"eval"}
    assert len(load_dataset(path).examples) == 5
    with pytest.raises(UserError, match="its splits: eval, train"):
        load_dataset(path, split="test")
    unsplit = str(write_jsonl(tmp_path / "u.jsonl", [{"question": "q", "answer": "a", "score": 1}]))
    with pytest.raises(UserError, match="no 'split' field"):
        load_dataset(unsplit, split="eval")


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
    assert (
        detect_format({"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 2})
        == "ultrafeedback-binarized"
    )
    assert detect_format({"prompt": "Human: hi\n\nAssistant:", "chosen": "a", "rejected": "b"}) == "hh-rlhf"
    assert detect_format({"prompt": "p", "chosen": "a", "rejected": "b"}) == "pairs"


def test_transcript_and_turn_parsers():
    assert parse_transcript("Human: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", "t") == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert parse_turns("only one") == [{"role": "user", "content": "only one"}]


def test_splits_are_by_group_deterministic_and_cover_everything():
    groups = [f"g{i % 37}" for i in range(500)]
    first, again = split_groups(groups, seed=3), split_groups(list(reversed(groups)), seed=3)
    assert first == again
    assert split_groups(groups, seed=4) != first
    masks = split_masks(groups, seed=3)
    assert sum(m.sum() for m in masks.values()) == 500
    by_split = {name: set(np.array(groups)[mask]) for name, mask in masks.items()}
    assert (
        not (by_split["train"] & by_split["val"])
        and not (by_split["train"] & by_split["test"])
        and not (by_split["val"] & by_split["test"])
    )
    assert [len(by_split[n]) for n in ("train", "val", "test")] == [22, 7, 8]


def test_held_out_prompts_are_a_seeded_choice_outside_the_excluded_prompts():
    examples = synthetic_examples(n_prompts=10, per_prompt=3)
    groups = list(dict.fromkeys(e.group for e in examples))
    excluded = set(groups[:4])
    chosen = held_out_prompts(examples, excluded, 3, seed=1)
    assert len({e.group for e in chosen}) == 3 and not {e.group for e in chosen} & excluded
    reordered = held_out_prompts(list(reversed(examples)), excluded, 3, seed=1)
    assert [e.group for e in reordered] == [e.group for e in chosen]  # the choice depends on the prompts, not the order
    every = held_out_prompts(examples, excluded, 100, seed=1)
    assert [e.group for e in every][:3] == [e.group for e in chosen] and {e.group for e in every} == set(groups[4:])
    assert [e.group for e in held_out_prompts(examples, excluded, 100, seed=2)] != [e.group for e in every]
    assert all(e is [x for x in examples if x.group == e.group][-1] for e in every)  # the prompt's last example
    assert held_out_prompts(examples, set(groups), 3, seed=1) == []


def test_non_finite_ratings_are_skipped_and_counted(tmp_path):
    records = [
        {"question": f"q{i}", "answer": "a", "score": score}
        for i, score in enumerate([1, float("inf"), "Infinity", "-inf", "NaN", float("nan"), 3, None])
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))  # json.dumps writes Infinity / NaN literals
    dataset = load_dataset(str(path))
    assert [e.rating for e in dataset.examples] == [1.0, 3.0]
    assert dataset.skipped == {"non-finite rating": 5, "missing rating": 1}
    aspects = write_jsonl(
        tmp_path / "hs.jsonl",
        [
            {
                "prompt": "p",
                "response": "r",
                "helpfulness": 2,
                "verbosity": "inf",
                "coherence": float("nan"),
                "correctness": 3,
            }
        ],
    )
    assert load_dataset(str(aspects)).examples[0].aspects == {"helpfulness": 2.0, "correctness": 3.0}


def test_group_keys_ignore_whitespace_and_case(tmp_path):
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"question": "What is  two\nplus two?", "answer": "4", "score": 9},
            {"question": "what is two plus TWO? ", "answer": "5", "score": 1},
            {"question": "what is three?", "answer": "3", "score": 9},
        ],
    )
    groups = [e.group for e in load_dataset(str(path)).examples]
    assert groups[0] == groups[1] != groups[2]


def test_group_keys_also_ignore_unicode_forms_and_typographic_punctuation(tmp_path):
    questions = [
        "What\u2019s the \u201cbest\u201d way \u2014 to say ( hi ) ?",
        'what\'s the "best" way - to say (hi)?',
        # full-width letters, a no-break space and a zero-width space
        "\uff37\uff48\uff41\uff54\u2019s\u00a0the \u201cbest\u201d way \u2014 to\u200b say (hi)?",
        "what's the best way to say hi?",  # other punctuation: another prompt
        'what\'s the "best" way, to say (hi)?',
    ]
    path = write_jsonl(tmp_path / "a.jsonl", [{"question": q, "answer": "4", "score": 9} for q in questions])
    groups = [e.group for e in load_dataset(str(path)).examples]
    assert groups[0] == groups[1] == groups[2] and len({groups[0], groups[3], groups[4]}) == 3


def test_a_split_the_data_names_makes_the_test_prompts():
    from latent_reward.data.splits import plan_splits

    groups = np.array([f"g{i // 2}" for i in range(200)])
    source = ["eval" if int(g[1:]) % 10 == 0 else "train" for g in groups]
    plan = plan_splits(groups, source, seed=0)
    test_groups = plan.groups_of("test", groups)
    assert test_groups == {g for g, s in zip(groups, source) if s == "eval"}
    assert not (plan.groups_of("train", groups) & test_groups) and not (plan.groups_of("val", groups) & test_groups)
    assert len(plan.groups_of("val", groups)) == 22 and "held-out" in plan.how
    fallback = plan_splits(groups, [None] * len(groups), seed=0)
    assert "60/20/20" in fallback.how and len(fallback.groups_of("test", groups)) == 20


def test_inner_split_and_folds_are_by_group():
    from latent_reward.data.splits import group_folds, inner_split

    groups = np.array([f"g{i // 3}" for i in range(90)])
    held = inner_split(groups, 0.2, seed=1)
    assert set(groups[held]).isdisjoint(groups[~held]) and len(set(groups[held])) == 6
    folds = group_folds(groups, 5, seed=2)
    for k in range(5):
        assert set(groups[folds == k]).isdisjoint(groups[folds != k])
    assert np.bincount(folds).tolist() == [18] * 5
