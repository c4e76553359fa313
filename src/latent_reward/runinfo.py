"""run.json: what a command did, with which options, versions and timings."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from latent_reward.activations.store import atomic_write_text


def write_run_json(folder: Path, command: str, options: dict[str, Any], timings: dict[str, float], extra: dict[str, Any] | None = None) -> Path:
    from latent_reward.activations.extract import versions

    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command,
        "argv": sys.argv,
        "options": options,
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **(extra or {}),
    }
    path = folder / "run.json"
    atomic_write_text(path, json.dumps(payload, indent=1, default=str))
    return path
