"""`latent-reward judge`: rate every response of a dataset with a judge behind an OpenAI-compatible endpoint.

Writes rated.jsonl (the project's own format: the judge's overall score as the rating, the four
aspects as targets, the rationale and the original rating in meta), judge.json (summary, usage,
agreement) and cache.sqlite (every answer, so a killed job resumes without asking twice).
"""

from __future__ import annotations

import json
from pathlib import Path

from latent_reward.config import DataSpec, Spec
from latent_reward.data.native import split_messages
from latent_reward.data.records import read_records
from latent_reward.data.schema import Example, make_example
from latent_reward.errors import UserError
from latent_reward.experiments.judge import JudgeConfig, JudgeSummary, judge_examples
from latent_reward.io import atomic_write_text
from latent_reward.judging.cache import JudgeCache
from latent_reward.judging.client import Endpoint
from latent_reward.workflows.base import Outcome, start

RATED_FILE = "rated.jsonl"
SUMMARY_FILE = "judge.json"
CACHE_FILE = "cache.sqlite"


class JudgeJob(Spec):
    data: DataSpec
    endpoint: Endpoint
    config: JudgeConfig = JudgeConfig()
    out: Path


def load_for_judging(data: DataSpec) -> list[Example]:
    """Examples to rate: any rated dataset (its ratings kept as the originals), or this project's own files whose
    ratings may be null (responses not judged yet)."""
    records = read_records(data.source, data.split)
    if (
        records
        and isinstance(records[0], dict)
        and {"messages", "rating"} <= set(records[0])
        and any(r.get("rating") is None for r in records)
    ):
        examples = []
        for index, record in enumerate(records[: data.limit] if data.limit else records):
            prompt, response = split_messages(record, f"record {index}")
            if not isinstance(response, str) or not response.strip():
                continue
            meta = {**(record.get("meta") or {}), "unrated": record.get("rating") is None}
            example = make_example("native", index, prompt, response, record.get("rating") or 0.0, meta=meta)
            examples.append(
                Example(
                    id=str(record.get("id") or example.id),
                    group=example.group,
                    messages=example.messages,
                    rating=example.rating,
                    meta=example.meta,
                )
            )
        if not examples:
            raise UserError(f"{data.source} has no responses to rate")
        return examples
    return data.load().examples


def run_judge(job: JudgeJob, progress: bool = True) -> Outcome[JudgeSummary]:
    with start("judge", job, job.out, "judge job") as folder:
        examples = load_for_judging(job.data)
        cache = JudgeCache(folder.path / CACHE_FILE)
        try:
            rated, summary = judge_examples(examples, job.endpoint, cache, job.config, progress)
        finally:
            cache.close()
        lines = "".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in rated)
        folder.timings["judge"] = summary.seconds
        return folder.finish(
            summary,
            SUMMARY_FILE,
            files={"rated": atomic_write_text(folder.path / RATED_FILE, lines), "cache": folder.path / CACHE_FILE},
        )
