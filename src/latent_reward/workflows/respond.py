"""`latent-reward respond`: responses to a prompt set from several models, ready to be judged.

Sources: models run here through transformers (bundled names, Hub ids, local folders; batched,
seeded sampling) and models behind any OpenAI-compatible endpoint. Writes responses.jsonl in the
project's own format with empty (null) ratings, the generator and sample index in meta.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from latent_reward.config import DataSpec, ModelSpec, Spec
from latent_reward.data.records import read_records
from latent_reward.data.schema import Message, group_key
from latent_reward.errors import UserError
from latent_reward.evaluation.results import Result
from latent_reward.generation import GenerationConfig, generate_chat
from latent_reward.io import atomic_write_text
from latent_reward.judging.cache import JudgeCache, item_key
from latent_reward.judging.client import Endpoint, Request, complete_all
from latent_reward.models.chat import fallback_stops
from latent_reward.workflows.base import Outcome, start

RESPONSES_FILE = "responses.jsonl"
PROMPT_FIELDS = ("prompt", "instruction", "question")


class RespondJob(Spec):
    prompts: DataSpec
    models: tuple[ModelSpec, ...] = ()  # run here
    endpoint_models: tuple[str, ...] = ()  # model names behind `endpoint`
    endpoint: Endpoint | None = None  # base URL, key variable, concurrency...
    samples: int = Field(1, ge=1, description="Responses per prompt per model.")
    generation: GenerationConfig = GenerationConfig(max_new_tokens=256, temperature=0.7)
    out: Path


class RespondResult(Result):
    """What `respond` wrote: responses.jsonl (unrated, ready for `judge`) and how many replies each source gave."""

    file: Path
    prompts: int
    responses: int
    per_source: dict[str, int]  # non-empty replies kept per model
    seconds: dict[str, float]  # per model


def read_prompts(data: DataSpec) -> list[list[Message]]:
    """Distinct prompts (conversations ending in a user turn): from a rated dataset, or from a file of prompts
    ({"prompt"|"instruction"|"question": text} or {"messages": [...]} per record)."""
    records = read_records(data.source, data.split)
    first = records[0] if records else {}
    if "messages" in first and "rating" not in first:
        prompts = [record["messages"] for record in records]
    elif any(field in first for field in PROMPT_FIELDS) and not (
        {"chosen", "answer", "output", "response", "completions"} & set(first)
    ):
        field = next(f for f in PROMPT_FIELDS if f in first)
        prompts = [[{"role": "user", "content": record[field]}] for record in records]
    else:
        prompts = list({e.group: e.prompt_messages for e in data.load().examples}.values())
    unique = list({group_key(p): p for p in prompts if p and p[-1].get("role") == "user"}.values())
    if not unique:
        raise UserError(f"{data.source} holds no prompts ending in a user turn")
    return unique[: data.limit] if data.limit else unique


def run_respond(job: RespondJob, progress: bool = True) -> Outcome[RespondResult]:
    if not job.models and not job.endpoint_models:
        raise UserError(
            "name at least one source: --model for models run here, --endpoint-model with --base-url for an endpoint"
        )
    if job.endpoint_models and job.endpoint is None:
        raise UserError("--endpoint-model needs --base-url")
    endpoints = (
        [job.endpoint.model_copy(update={"model": model, "structured": False}) for model in job.endpoint_models]
        if job.endpoint is not None
        else []
    )
    with start("respond", job, job.out, "respond job") as folder:
        prompts = read_prompts(job.prompts)
        records, per_source = [], {}
        for spec in job.models:
            with folder.timed(spec.name):
                replies = _local(spec, prompts, job)
            records += replies
            per_source[spec.name] = len(replies)
        for endpoint in endpoints:
            with folder.timed(endpoint.model):
                replies = _remote(endpoint, prompts, job, folder.path, progress)
            records += replies
            per_source[endpoint.model] = len(replies)
        file = atomic_write_text(
            folder.path / RESPONSES_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        )
        result = RespondResult(
            file=file, prompts=len(prompts), responses=len(records), per_source=per_source, seconds=dict(folder.timings)
        )
        return folder.finish(
            result, results=None, files={"responses": file}, extra={"prompts": len(prompts), "responses": len(records)}
        )


def _record(
    prompt: list[Message], response: str, generator: str, sample: int, index: int, stop: str | None = None
) -> dict:
    group = group_key(prompt)
    return {
        "id": f"respond:{generator}:{group}:{sample}",
        "group": group,
        "messages": [*prompt, {"role": "assistant", "content": response}],
        "rating": None,
        "aspects": {},
        "meta": {
            "generator": generator,
            "sample_index": sample,
            "prompt_index": index,
            **({"stop": stop} if stop else {}),
        },
    }


def _local(spec: ModelSpec, prompts: list[list[Message]], job: RespondJob) -> list[dict]:
    loaded = spec.load()
    stops = fallback_stops(loaded.info.chat_template)
    config = job.generation.model_copy(update={"stop_strings": job.generation.stop_strings or stops})
    conversations = [p for p in prompts for _ in range(job.samples)]
    replies = generate_chat(loaded, conversations, config)
    return [
        _record(conversations[i], reply.text.strip(), spec.name, i % job.samples, i // job.samples, reply.stop)
        for i, reply in enumerate(replies)
        if reply.text.strip()
    ]


def _remote(endpoint: Endpoint, prompts: list[list[Message]], job: RespondJob, out: Path, progress: bool) -> list[dict]:
    cache = JudgeCache(out / "cache.sqlite")
    try:
        requests = [
            Request(item_key(endpoint.model, "respond", [p, s, endpoint.temperature]), list(p))
            for p in prompts
            for s in range(job.samples)
        ]
        _, replies, _ = complete_all(endpoint, requests, cache, "respond", progress)
    finally:
        cache.close()
    records = []
    for i, request in enumerate(requests):
        text = (replies.get(request.key) or "").strip()
        if text:
            records.append(_record(prompts[i // job.samples], text, endpoint.model, i % job.samples, i // job.samples))
    return records
