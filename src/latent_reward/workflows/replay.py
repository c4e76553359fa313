"""`latent-reward rerun`: run a result folder's command again from its run.json, the same configuration into a new
folder. Every command's config is a pydantic object saved whole in run.json, so the replay is that object read back
with only `out` changed; paths in it are as they were given (rerun from the same working folder)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from latent_reward.errors import UserError
from latent_reward.io import read_json, versions
from latent_reward.workflows.base import RUN_FILE, Outcome

# command -> (module, its config class, the function that runs it)
REPLAYABLE = {
    "run": ("latent_reward.workflows.run", "RunConfig", "run"),
    "sweep": ("latent_reward.workflows.run", "SweepJob", "sweep_stores"),
    "extract": ("latent_reward.workflows.extract", "ExtractJob", "run_extract"),
    "prompt-only": ("latent_reward.workflows.prompt_only", "PromptOnlyJob", "run_prompt_only"),
    "score": ("latent_reward.workflows.score", "ScoreJob", "run_score"),
    "respond": ("latent_reward.workflows.respond", "RespondJob", "run_respond"),
    "judge": ("latent_reward.workflows.judge", "JudgeJob", "run_judge"),
    "steer": ("latent_reward.workflows.steer", "SteerJob", "run_steer"),
    "conversation": ("latent_reward.workflows.conversation", "ConversationJob", "run_conversation"),
    "train": ("latent_reward.workflows.train", "TrainJob", "run_train"),
    "compare": ("latent_reward.workflows.compare", "CompareJob", "run_compare"),
}


@dataclass
class Recorded:
    """A result folder's command and configuration, ready to run again."""

    command: str
    config: Any  # the command's config object, with `out` replaced
    runner: Callable[[Any], Outcome]  # the workflow that runs it
    version_changes: dict[str, tuple[str | None, str | None]]  # package -> (recorded, installed), where they differ

    def run(self) -> Outcome:
        """Run it; returns the command's Outcome."""
        return self.runner(self.config)


def recorded(folder: str | Path, out: str | Path) -> Recorded:
    """The command recorded in `folder`/run.json with the same configuration, set to write into `out`."""
    record = read_json(Path(folder) / RUN_FILE, "run record")
    command = record.get("command") if isinstance(record, dict) else None
    if command not in REPLAYABLE:
        raise UserError(
            f"{Path(folder) / RUN_FILE} records the command {command!r}, which rerun cannot replay "
            f"(it replays {', '.join(REPLAYABLE)})"
        )
    module_name, config_name, runner_name = REPLAYABLE[command]
    module = importlib.import_module(module_name)
    try:
        config = getattr(module, config_name).model_validate({**record["config"], "out": str(out)})
    except (KeyError, TypeError, pydantic.ValidationError) as error:
        raise UserError(
            f"{Path(folder) / RUN_FILE} holds no {command} configuration this version reads "
            f"({type(error).__name__}); it was written by another version"
        ) from None
    saved, installed = record.get("versions") or {}, versions()
    changes = {
        name: (saved.get(name), installed.get(name))
        for name in sorted({*saved, *installed})
        if saved.get(name) != installed.get(name)
    }
    return Recorded(command, config, getattr(module, runner_name), changes)
