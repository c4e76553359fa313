"""`latent-reward prompt-only`: expected reward from the user's input alone, on an existing store."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from latent_reward.activations.store import ActivationStore
from latent_reward.config import Device, Spec
from latent_reward.errors import UserError
from latent_reward.experiments.prompt_only import PromptOnlyConfig, PromptOnlyResult, prompt_only
from latent_reward.probes.compute import analysis_device, fit_device
from latent_reward.workflows.base import Outcome, start

RESULT_FILE = "prompt_only.json"


class PromptOnlyJob(Spec):
    store: Path
    out: Path
    random_init_store: Path | None = Field(None, description="The random-init control's store, same data.")
    config: PromptOnlyConfig = PromptOnlyConfig()
    device: Device = Field("cpu", description="Where the ridge fits compute: cpu, cuda, cuda:N or auto.")


def run_prompt_only(job: PromptOnlyJob, progress: bool = True) -> Outcome[PromptOnlyResult]:
    fit_device(job.device)  # refused before the output folder is made
    with start("prompt-only", job, job.out, "prompt-only result") as folder:
        store = ActivationStore.open(job.store)
        random_store = ActivationStore.open(job.random_init_store) if job.random_init_store else None
        with analysis_device(job.device):
            result = prompt_only(store, job.config, random_init_store=random_store, progress=progress)
        if result is None:
            raise UserError("the store has neither user_end nor assistant_start states; extract with those positions")
        return folder.finish(result, RESULT_FILE)
