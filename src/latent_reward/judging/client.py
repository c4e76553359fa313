"""Chat completions from any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, SGLang...), many at once.

The `openai` package does the HTTP work: per-request timeouts, and retries with exponential backoff
and jitter on 429 / 5xx / timeouts / lost connections, honouring Retry-After. On top of it: a limit on
requests in flight, the on-disk cache (answers already given are never asked again), one more try for
a reply that cannot be parsed (then it is recorded as missing and counted), summed token usage and
cost, a progress bar, and one clear error for an endpoint that cannot be used at all. A request that
names its reply's JSON schema asks for structured output in the form the endpoint takes (`structured`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from latent_reward.errors import UserError
from latent_reward.io import progress_bar
from latent_reward.judging.cache import JudgeCache
from latent_reward.judging.structured import TEXT, FormatChooser, response_format


class Endpoint(BaseModel):
    """Where requests go. The key is read from the environment variable named by `api_key_env`, never stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the endpoint's API key (never the key; local servers "
        "need none).",
    )
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    timeout: float = Field(60.0, ge=0.1, description="Seconds per request before it is retried.")
    max_retries: int = Field(
        4,
        ge=0,
        description="Retries per request on 429, 5xx and timeouts (exponential backoff, honouring Retry-After).",
    )
    temperature: float = Field(0.0, ge=0, description="Sampling temperature (0 = greedy).")
    max_tokens: int = Field(512, ge=1)
    structured: bool = Field(
        True,
        description="Ask for a request's reply schema (the rubric's JSON schema) as the response format; endpoints "
        "that refuse it get free text, parsed as before.",
    )
    price_input: float | None = Field(None, description="Price per million prompt tokens, for the cost estimate.")
    price_output: float | None = Field(None, description="Price per million completion tokens.")

    def api_key(self) -> str:
        if self.api_key_env is None:
            return "not-needed"  # local servers take any key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise UserError(f"the environment variable {self.api_key_env} (named by --api-key-env) is not set")
        return key


@dataclass(frozen=True)
class Request:
    key: str  # cache key
    messages: list[dict[str, str]]
    parse: Callable[[str], Any] | None = None  # the reply's text -> a parsed value, or None when malformed
    schema: tuple[str, dict[str, Any]] | None = None  # (name, JSON schema) of the reply, asked for as structured output


@dataclass
class Usage:
    requests: int = 0  # sent to the endpoint by this run (retries made by the HTTP layer not counted)
    cached: int = 0  # answered from the cache
    malformed: int = 0  # replies that could not be parsed even after one more try: recorded as missing
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    response_format: str | None = None  # the form the structured requests were sent in (structured.FORMATS)

    def cost(self, endpoint: Endpoint) -> float | None:
        if endpoint.price_input is None or endpoint.price_output is None:
            return None
        return (self.prompt_tokens * endpoint.price_input + self.completion_tokens * endpoint.price_output) / 1e6


def complete_all(
    endpoint: Endpoint, requests: list[Request], cache: JudgeCache, rubric: str, progress: bool = True
) -> tuple[dict[str, Any], dict[str, str], Usage]:
    """Answer every request (from the cache where possible): parsed values and raw replies by cache key, and the
    usage."""
    return asyncio.run(_complete_all(endpoint, requests, cache, rubric, progress))


async def _complete_all(endpoint: Endpoint, requests: list[Request], cache: JudgeCache, rubric: str, progress: bool):
    import time

    from latent_reward.extras import require

    AsyncOpenAI = require("openai").AsyncOpenAI
    usage, parsed, replies = Usage(), {}, {}
    todo = []
    for request in requests:
        hit = cache.get(request.key)
        if hit is None:
            todo.append(request)
        else:
            usage.cached += 1
            parsed[request.key], replies[request.key] = hit["parsed"], hit["reply"]
    client = AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key(),
        timeout=endpoint.timeout,
        max_retries=endpoint.max_retries,
    )
    limit = asyncio.Semaphore(endpoint.concurrency)
    chooser = FormatChooser(endpoint.base_url, endpoint.model)
    bar = progress_bar(len(todo), f"ask {endpoint.model}", "item", progress)
    started = time.perf_counter()

    async def answer(request: Request) -> None:
        async with limit:
            text, value, tokens = await _ask(client, endpoint, request, usage, chooser)
        usage.prompt_tokens += tokens[0]
        usage.completion_tokens += tokens[1]
        cache.put(request.key, endpoint.model, rubric, text, value, *tokens)
        parsed[request.key], replies[request.key] = value, text
        bar.update(1)

    try:
        await _gather_or_fail([answer(r) for r in todo])
    finally:
        bar.close()
        await client.close()
        usage.seconds = time.perf_counter() - started
    return parsed, replies, usage


async def _gather_or_fail(jobs) -> None:
    """Run every job; the first unrecoverable error cancels the rest (answers already cached are kept)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _ask(
    client, endpoint: Endpoint, request: Request, usage: Usage, chooser: FormatChooser
) -> tuple[str, Any, tuple[int, int]]:
    """One item: up to two replies (one more when the first cannot be parsed); the text, the parsed value
    (None when malformed) and the tokens used."""
    text, used = "", (0, 0)
    for _ in range(2):
        text, prompt_tokens, completion_tokens = await _chat(client, endpoint, request, usage, chooser)
        usage.requests += 1
        used = (used[0] + prompt_tokens, used[1] + completion_tokens)
        value = request.parse(text) if request.parse else text
        if value is not None:
            return text, value, used
    usage.malformed += 1
    return text, None, used


async def _chat(
    client, endpoint: Endpoint, request: Request, usage: Usage, chooser: FormatChooser
) -> tuple[str, int, int]:
    import openai

    def create(kind: str):
        options: dict[str, Any] = {
            "model": endpoint.model,
            "messages": request.messages,
            "temperature": endpoint.temperature,
            "max_tokens": endpoint.max_tokens,
        }
        if request.schema is not None and kind != TEXT:
            options["response_format"] = response_format(kind, *request.schema)
        return client.chat.completions.create(**options)

    try:
        if request.schema is not None and endpoint.structured:
            response, usage.response_format = await chooser.send(create)
        else:
            response = await create(TEXT)
    except openai.AuthenticationError:
        raise UserError(
            f"{endpoint.base_url} refused the API key (401); check {endpoint.api_key_env or '--api-key-env'}"
        ) from None
    except openai.NotFoundError as error:
        raise UserError(f"{endpoint.base_url} does not serve model {endpoint.model!r} ({_detail(error)})") from None
    except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
        raise UserError(f"{endpoint.base_url} rejected the request for {endpoint.model!r} ({_detail(error)})") from None
    except openai.APIConnectionError:
        raise UserError(f"cannot reach {endpoint.base_url} (after {endpoint.max_retries} retries)") from None
    except openai.APIStatusError as error:
        raise UserError(
            f"{endpoint.base_url} kept failing with HTTP {error.status_code} (after {endpoint.max_retries} retries)"
        ) from None
    tokens = (
        (response.usage.prompt_tokens or 0, response.usage.completion_tokens or 0)
        if response.usage is not None
        else (0, 0)
    )
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content or "") if choice is not None and choice.message is not None else ""
    return text, *tokens


def _detail(error) -> str:
    text = str(getattr(error, "message", "") or error)
    return text.splitlines()[0][:200] if text else type(error).__name__
