"""UltraFeedback: the unbinarized original (openbmb/UltraFeedback) and ultrafeedback_binarized."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from latent_reward.data.fields import check_messages, rated_example, require_fields, split_of, user_turn
from latent_reward.data.schema import Example, Message
from latent_reward.errors import UserError

ASPECTS = ("helpfulness", "honesty", "instruction_following", "truthfulness")


def load_unbinarized(records: list[dict[str, Any]], skips: Counter[str]) -> Iterator[Example]:
    """openbmb/UltraFeedback: one row per instruction with ~4 completions, each rated.

    The rating is the completion's `overall_score` (GPT-4's 1-10 critique score); the four
    aspect ratings (1-5) and their mean (`fine-grained_score`) become aspects.
    """
    for row_index, record in enumerate(records):
        where = f"UltraFeedback record {row_index}"
        require_fields(record, ("instruction", "completions"), where)
        prompt = user_turn(record["instruction"], where)
        completions = record["completions"] or []
        if not isinstance(completions, list) or not all(isinstance(c, dict) for c in completions):
            raise UserError(f"{where}: completions must be a list of objects")
        for completion_index, completion in enumerate(completions):
            annotations = completion.get("annotations") if isinstance(completion.get("annotations"), dict) else {}
            aspects = {name: _rating_of(annotations.get(name)) for name in ASPECTS}
            aspects["fine_grained"] = completion.get("fine-grained_score")
            example = rated_example(
                "ultrafeedback",
                f"{row_index}.{completion_index}",
                prompt,
                completion.get("response"),
                completion.get("overall_score"),
                skips,
                aspects=aspects,
                meta={"generator": completion.get("model"), "subset": record.get("source"), **split_of(record)},
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
            prompt, response = _prompt_and_response(record["prompt"], record[side], where)
            example = rated_example(
                "ultrafeedback_binarized",
                f"{row_index}.{side}",
                prompt,
                response,
                record[f"score_{side}"],
                skips,
                meta={"pair": f"ultrafeedback_binarized:{row_index}", "side": side, **split_of(record)},
            )
            if example is not None:
                yield example


def _prompt_and_response(prompt: Any, completion: Any, where: str) -> tuple[list[Message], Any]:
    """Hub rows carry the whole conversation; flat rows carry the response text alone."""
    if isinstance(completion, list):
        check_messages(completion, where)
        messages = [{"role": m["role"], "content": m["content"]} for m in completion]
        if messages and messages[-1]["role"] == "assistant":
            return messages[:-1], messages[-1]["content"]
        return messages, None
    return user_turn(prompt, where), completion


def _rating_of(annotation: Any) -> Any:
    """An aspect's rating from its annotation object ({"Rating": "4", ...}); None when absent."""
    return annotation.get("Rating") if isinstance(annotation, dict) else None
