"""The judge's resumable cache: one SQLite file, one row per (endpoint model, rubric, item, repeat).

Each answer is committed as soon as it arrives, so a job killed at any moment resumes without asking
(or paying) twice. SQLite (standard library) gives atomic commits; the folder's lock keeps a second
job out.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, model TEXT, rubric TEXT, reply TEXT, parsed TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER)"""


def item_key(model: str, rubric: str, payload: Any) -> str:
    """A stable key for one request: the endpoint's model, the rubric version and the item (messages, repeat...)."""
    text = json.dumps([model, rubric, payload], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class JudgeCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.connection = sqlite3.connect(self.path)
        # Every answer is committed as it arrives (a killed job loses none). WAL with synchronous=NORMAL makes those
        # commits cheap (no fsync each; still safe if the process dies), so they do not stall the request loop.
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(SCHEMA)
        self.connection.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.connection.execute(
            "SELECT reply, parsed, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return {
            "reply": row[0],
            "parsed": json.loads(row[1]) if row[1] else None,
            "prompt_tokens": row[2],
            "completion_tokens": row[3],
        }

    def put(
        self,
        key: str,
        model: str,
        rubric: str,
        reply: str,
        parsed: dict[str, Any] | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                model,
                rubric,
                reply,
                json.dumps(parsed) if parsed is not None else None,
                prompt_tokens,
                completion_tokens,
            ),
        )
        self.connection.commit()

    def __len__(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self.connection.close()
