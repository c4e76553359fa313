"""`latent-reward prompt-only`: expected reward from the user's input alone, on an existing store."""

from __future__ import annotations

from pathlib import Path

from latent_reward.activations.store import ActivationStore
from latent_reward.config import Spec
from latent_reward.errors import UserError
from latent_reward.experiments.prompt_only import PromptOnlyConfig, PromptOnlyResult, prompt_only
from latent_reward.io import exclusive, prepare_output_folder, write_json
from latent_reward.workflows.common import write_run_json

RESULT_FILE = "prompt_only.json"


class PromptOnlyJob(Spec):
    store: Path
    out: Path
    random_init_store: Path | None = None
    config: PromptOnlyConfig = PromptOnlyConfig()


def run_prompt_only(job: PromptOnlyJob, progress: bool = True) -> PromptOnlyResult:
    out = prepare_output_folder(job.out)
    with exclusive(out, "prompt-only result"):
        store = ActivationStore.open(job.store)
        random_store = ActivationStore.open(job.random_init_store) if job.random_init_store else None
        result = prompt_only(store, job.config, random_init_store=random_store, progress=progress)
        if result is None:
            raise UserError("the store has neither user_end nor assistant_start states; extract with those positions")
        write_json(out / RESULT_FILE, result)
        write_run_json(out, "prompt-only", job, {})
        return result
