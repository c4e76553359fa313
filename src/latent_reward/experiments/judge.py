"""Rate responses with a judge, and measure how far its ratings agree with the data's own and with itself.

Rating mode asks for the four UltraFeedback aspects and an overall score per response; the overall
score becomes the rating, the aspects stay as targets. Pairwise mode asks which of two responses to
the same prompt is better, in both orders (a verdict that flips with the order counts as a tie).
Agreement with the original ratings: Spearman rho and within-prompt pair agreement (the share of
same-prompt pairs the two order alike), with intervals that resample prompts. Self-consistency: the
same items rated again (at temperature > 0) compared with the first rating.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field

from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.evaluation.metrics import Resampler, all_metrics, quantile_interval
from latent_reward.evaluation.results import Interval, Result, finite
from latent_reward.judging.cache import JudgeCache, item_key
from latent_reward.judging.client import Endpoint, Request, Usage, complete_all
from latent_reward.judging.rating import rate
from latent_reward.judging.rubric import (
    ASPECTS,
    RUBRIC_VERSION,
    PreferenceReply,
    pairwise_messages,
    parse_preference,
    reply_schema,
)


class JudgeConfig(Result):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["rating", "pairwise"] = Field(
        "rating", description="rating (aspects + overall, 1-10) or pairwise (which of two is better)."
    )
    repeats: int = Field(
        1, ge=1, description="Rate every item this many times (2+ with --temperature > 0: self-consistency)."
    )
    n_boot: int = 1000
    seed: int = 0


class Agreement(Result):
    items: int
    prompts: int
    spearman: Interval
    within_prompt: Interval  # share of same-prompt pairs (differing in the reference) that both order alike
    pairs: int


class JudgeSummary(Result):
    endpoint: str
    model: str
    rubric: str
    mode: str
    items: int
    rated: int
    missing: int  # malformed after one more try: recorded as missing, never guessed
    cached: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    seconds: float
    items_per_second: float | None
    response_format: str | None = None  # the structured-output form used (judging.structured.FORMATS); None: all cached
    with_original: Agreement | None = None  # judge vs the ratings the data came with
    self_consistency: Agreement | None = None  # repeat 2 vs repeat 1


def judge_examples(
    examples: list[Example],
    endpoint: Endpoint,
    cache: JudgeCache,
    config: JudgeConfig | None = None,
    progress: bool = True,
) -> tuple[list[Example], JudgeSummary]:
    """The examples rated by the judge (unrateable ones dropped and counted), and the summary."""
    config = config or JudgeConfig()
    if config.mode == "pairwise":
        return _pairwise(examples, endpoint, cache, config, progress)
    scores, usage = rate([(e.prompt_messages, e.response) for e in examples], endpoint, cache, config.repeats, progress)
    rated = []
    for example, repeats in zip(examples, scores):
        first = repeats[0]
        if first is None:
            continue
        judge = {
            "model": endpoint.model,
            "rubric": RUBRIC_VERSION,
            "rationale": first["rationale"],
            "repeats": [s["overall"] if s else None for s in repeats],
        }
        meta = {**example.meta, "judge": judge, "original_rating": example.rating if _has_rating(example) else None}
        rated.append(
            replace(example, rating=float(first["overall"]), aspects={a: float(first[a]) for a in ASPECTS}, meta=meta)
        )
    summary = _summary(endpoint, config, len(examples), len(rated), usage)
    summary.with_original = _agreement(
        [e.meta["original_rating"] for e in rated], [e.rating for e in rated], [e.group for e in rated], config
    )
    if config.repeats > 1:
        second = [e.meta["judge"]["repeats"][1] for e in rated]
        summary.self_consistency = _agreement(second, [e.rating for e in rated], [e.group for e in rated], config)
    return rated, summary


def _has_rating(example: Example) -> bool:
    return example.meta.get("unrated") is not True


def _pairwise(examples: list[Example], endpoint: Endpoint, cache: JudgeCache, config: JudgeConfig, progress: bool):
    """Pairs (chosen / rejected, or the two responses of a two-response prompt) judged in both orders."""
    pairs: dict[str, list[Example]] = {}
    for example in examples:
        pairs.setdefault(example.meta.get("pair") or example.group, []).append(example)
    pairs = {k: v for k, v in pairs.items() if len(v) == 2}
    if not pairs:
        raise UserError("pairwise judging needs pairs: two responses per prompt (or chosen/rejected pair data)")
    requests, schema = [], reply_schema(PreferenceReply)
    for members in pairs.values():
        a, b = members
        for first, second in ((a, b), (b, a)):
            key = item_key(
                endpoint.model, RUBRIC_VERSION + "-pairwise", [a.prompt_messages, first.response, second.response]
            )
            messages = pairwise_messages(a.prompt_messages, first.response, second.response)
            requests.append(Request(key, messages, parse_preference, schema))
    parsed, _, usage = complete_all(endpoint, requests, cache, RUBRIC_VERSION + "-pairwise", progress)
    rated = []
    for index, (a, b) in enumerate(pairs.values()):
        forward, backward = parsed[requests[2 * index].key], parsed[requests[2 * index + 1].key]
        if forward is None or backward is None:
            continue
        a_wins = (forward["preferred"] == "A") + (
            backward["preferred"] == "B"
        )  # 2: both orders, 1: the order decided, 0: never
        share = a_wins / 2
        for example, value in ((a, share), (b, 1 - share)):
            meta = {
                **example.meta,
                "original_rating": example.rating if _has_rating(example) else None,
                "judge": {
                    "model": endpoint.model,
                    "rubric": RUBRIC_VERSION + "-pairwise",
                    "rationale": forward["rationale"],
                    "order_consistent": a_wins != 1,
                },
            }
            rated.append(replace(example, rating=float(value), meta=meta))
    summary = _summary(endpoint, config, len(pairs), len(rated) // 2, usage)
    summary.with_original = _agreement(
        [e.meta["original_rating"] for e in rated], [e.rating for e in rated], [e.group for e in rated], config
    )
    return rated, summary


def _summary(endpoint: Endpoint, config: JudgeConfig, items: int, rated: int, usage: Usage) -> JudgeSummary:
    return JudgeSummary(
        endpoint=endpoint.base_url,
        model=endpoint.model,
        rubric=RUBRIC_VERSION,
        mode=config.mode,
        items=items,
        rated=rated,
        missing=usage.malformed,
        cached=usage.cached,
        requests=usage.requests,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost=usage.cost(endpoint),
        seconds=usage.seconds,
        response_format=usage.response_format,
        items_per_second=(items * config.repeats - usage.cached) / usage.seconds if usage.seconds > 0 else None,
    )


def _agreement(reference: list, judged: list, groups: list, config: JudgeConfig) -> Agreement | None:
    """Spearman and within-prompt pair agreement of judged against reference, where both exist."""
    rows = [i for i, value in enumerate(reference) if value is not None and judged[i] is not None]
    if len(rows) < 3:
        return None
    y = np.array([reference[i] for i in rows], dtype=np.float64)
    p = np.array([judged[i] for i in rows], dtype=np.float64)
    g = np.array([groups[i] for i in rows])
    resampler = Resampler.make(g, config.n_boot, config.seed)
    points = all_metrics(y, p, g)
    samples = resampler.samples(y, p)
    from latent_reward.evaluation.metrics import pair_counts

    _, total = pair_counts(y, p, g)
    return Agreement(
        items=len(rows),
        prompts=len(set(g)),
        spearman=quantile_interval(points["spearman"], samples["spearman"]),
        within_prompt=quantile_interval(points["within_acc"], samples["within_acc"])
        if "within_acc" in samples
        else Interval.of(finite(points["within_acc"])),
        pairs=int(total.sum()),
    )
