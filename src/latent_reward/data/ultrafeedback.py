"""UltraFeedback: the unbinarized original (openbmb/UltraFeedback) and ultrafeedback_binarized."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from latent_reward.data.fields import rated_example, require_fields, user_turn
from latent_reward.data.schema import Example, Message

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def load_unbinarized(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """openbmb/UltraFeedback: one row per instruction with ~4 completions, each rated.

    The rating is the completion's `overall_score` (GPT-4's 1-10 critique score); the four
    aspect ratings (1-5) and their mean (`fine-grained_score`) become aspects.
    """
    for row_index, record in enumerate(records):
        require_fields(record, ("instruction", "completions"), f"UltraFeedback record {row_index}")
        prompt = user_turn(record["instruction"])
        for completion_index, completion in enumerate(record["completions"] or []):
            annotations = completion.get("annotations") or {}
            aspects = {name: (annotations.get(name) or {}).get("Rating") for name in ASPECTS}
            aspects["fine_grained"] = completion.get("fine-grained_score")
            example = rated_example(
                "ultrafeedback",
                f"{row_index}.{completion_index}",
                prompt,
                completion.get("response"),
                completion.get("overall_score"),
                skips,
                aspects=aspects,
                meta={"generator": completion.get("model"), "subset": record.get("source")},
            )
            if example is not None:
                yield example


def load_binarized(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """ultrafeedback_binarized: one row per prompt with a chosen and a rejected completion.

    Both Hub rows (chosen/rejected as message lists) and flat rows (strings) are read; each
    completion becomes one Example rated with `score_chosen` / `score_rejected`.
    """
    for row_index, record in enumerate(records):
        where = f"ultrafeedback_binarized record {row_index}"
        require_fields(record, ("prompt", "chosen", "rejected", "score_chosen", "score_rejected"), where)
        for side in ("chosen", "rejected"):
            prompt, response = _prompt_and_response(record["prompt"], record[side])
            example = rated_example(
                "ultrafeedback_binarized",
                f"{row_index}.{side}",
                prompt,
                response,
                record[f"score_{side}"],
                skips,
                meta={"pair": f"ultrafeedback_binarized:{row_index}", "side": side, "source_split": record.get("split")},
            )
            if example is not None:
                yield example


def _prompt_and_response(prompt: str, completion: Any) -> tuple[list[Message], Any]:
    """Hub rows carry the whole conversation; flat rows carry the response text alone."""
    if isinstance(completion, list):
        messages = [{"role": m["role"], "content": m["content"]} for m in completion]
        if messages and messages[-1]["role"] == "assistant":
            return messages[:-1], messages[-1]["content"]
        return messages, None
    return user_turn(prompt), completion
