"""Single answers graded by a judge: arena-bench (1-10 scores), AlpacaEval and best-of-n files."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from latent_reward.data.fields import parse_rating, rated_example, require_fields, split_of, user_turn
from latent_reward.data.schema import Example


def load_arena(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """Arena-bench v1: GPT-4 grades each model's answer 1-10 against a reference answer."""
    for row_index, record in enumerate(records):
        require_fields(record, ("question", "answer", "score"), f"arena record {row_index}")
        example = rated_example(
            "arena",
            row_index,
            user_turn(record["question"], f"arena record {row_index}"),
            record["answer"],
            record["score"],
            skips,
            meta={"generator": record.get("model"), "question_id": record.get("question_id"), **split_of(record)},
        )
        if example is not None:
            yield example


def load_alpacaeval(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """AlpacaEval annotations and RewardBench's best-of-n samples.

    The rating is the judge's probability that the output beats the reference answer
    (`p_win_vs_reference`, or `preference - 1` where only that is given). Unscored samples
    (null) are skipped and counted.
    """
    for row_index, record in enumerate(records):
        require_fields(record, ("instruction", "output"), f"AlpacaEval record {row_index}")
        where = f"AlpacaEval record {row_index}"
        rating = record.get("p_win_vs_reference")
        if rating is None and record.get("preference") is not None:
            preference = parse_rating(record["preference"], where)
            rating = None if preference is None else preference - 1.0
        example = rated_example(
            "alpacaeval",
            row_index,
            user_turn(record["instruction"], where),
            record["output"],
            rating,
            skips,
            meta={
                "generator": record.get("generator"),
                "subset": record.get("dataset"),
                "sample_index": record.get("sample_index"),
                **split_of(record),
            },
        )
        if example is not None:
            yield example
