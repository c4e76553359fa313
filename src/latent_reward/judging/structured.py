"""Structured output: ask an endpoint for a reply that follows a JSON schema, in the form that endpoint takes.

The forms, tried in this order: `{"type": "json_schema", "json_schema": {name, schema, strict}}` (OpenAI, vLLM,
SGLang, llama.cpp's own server), `{"type": "json_object", "schema": ...}` (llama-cpp-python's server, whose request
model allows only "text" and "json_object"), then no response format (the reply is parsed from free text). An
endpoint that refuses a form (HTTP 400 or 422 naming it, or llama-cpp-python's 500 naming it) gets the next one. The
form an endpoint took is remembered for the rest of the process, per base URL and model, and the first structured
request settles it while the others wait, so a refused form is asked once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

FORMATS = ("json_schema", "json_object+schema", "text")
TEXT = "text"
_TAKEN: dict[tuple[str, str], str] = {}  # (base URL, model) -> the form that endpoint took

T = TypeVar("T")


def response_format(kind: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `response_format` in one of FORMATS (None: free text)."""
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    if kind == "json_object+schema":
        return {"type": "json_object", "schema": schema}
    if kind == TEXT:
        return None
    raise ValueError(f"unknown response format {kind!r}")


def refuses_format(error: BaseException) -> bool:
    """An HTTP 400 or 422 whose message names the response format: the endpoint does not take that form. Also a 500
    naming it: llama-cpp-python's server (0.3.36) wraps its request-validation error as an internal error."""
    if getattr(error, "status_code", None) not in (400, 422, 500):
        return False
    text = f"{getattr(error, 'message', '')} {getattr(error, 'body', '')}".lower()
    return "response_format" in text or "json_schema" in text


class FormatChooser:
    """Sends structured requests to one endpoint in the form it takes (see the module docstring)."""

    def __init__(self, base_url: str, model: str):
        self.key = (base_url, model)
        self.lock = asyncio.Lock()  # one per event loop: make the chooser inside the loop that uses it

    def taken(self) -> str | None:
        """The form this endpoint took, once known."""
        return _TAKEN.get(self.key)

    async def send(self, attempt: Callable[[str], Awaitable[T]]) -> tuple[T, str]:
        """`attempt(kind)` in the endpoint's form: its result and the form used. Errors other than a refused form
        are raised as they come."""
        kind = self.taken()
        if kind is None:
            async with self.lock:
                kind = self.taken()
                if kind is None:
                    return await self._settle(attempt)
        return await attempt(kind), kind

    async def _settle(self, attempt: Callable[[str], Awaitable[T]]) -> tuple[T, str]:
        for kind in FORMATS:
            try:
                result = await attempt(kind)
            except Exception as error:
                if kind == TEXT or not refuses_format(error):
                    raise
                continue
            _TAKEN[self.key] = kind
            return result, kind
        raise AssertionError("unreachable: free text is never refused as a format")
