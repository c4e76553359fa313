"""`latent-reward conversation`: does the model steer the user? Writes results.json, replies.csv, user_turns.csv,
follow_ups.csv, conversation.html and run.json."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from latent_reward.config import DataSpec, Device, ModelSpec, Spec
from latent_reward.data.records import read_records
from latent_reward.errors import UserError
from latent_reward.experiments.conversation import ConversationConfig, ConversationReport, conversation_report
from latent_reward.io import write_csv
from latent_reward.probes import Probe
from latent_reward.probes.reader import probe_model
from latent_reward.report.conversation import write_conversation_report
from latent_reward.workflows.base import Outcome, start


class ConversationJob(Spec):
    prompt_probe: Path  # V: a prompt probe at assistant_start (a run's prompt_probe folder)
    model: str | None = None  # the model V reads (default: the one it was trained on)
    response_probe: Path | None = Field(
        None, description="A probe that reads the response (a run's within_probe), to control for quality."
    )
    data: DataSpec  # conversations ending in a user turn (their responses, if any, are the "data reply")
    xstest: Path | None = Field(None, description="XSTest's labelled completions (refusal vs redirect).")
    user_simulators: tuple[str, ...] = Field(
        (), description="Another model writing the user's turns (repeatable); the model itself always does."
    )
    prompts: int = Field(24, ge=1, description="Conversations to use (a seeded choice among the data's prompts).")
    config: ConversationConfig = ConversationConfig()
    out: Path
    device: Device = "auto"  # every model's (the probe's and the user simulators')
    device_map: str | None = None


def run_conversation(job: ConversationJob) -> Outcome[ConversationReport]:
    prompt_probe = Probe.load(job.prompt_probe)
    if prompt_probe.info.position != "assistant_start":
        raise UserError("--prompt-probe must read assistant_start (a run's prompt_probe folder)")
    response_probe = Probe.load(job.response_probe) if job.response_probe else None
    if response_probe is not None and response_probe.info.reads_prompt_only:
        raise UserError(
            f"--response-probe reads {response_probe.info.position}, before the response, so it gives every reply to a "
            "prompt the same rating; pass a probe that reads the response (a run's within_probe folder)"
        )
    with start("conversation", job, job.out, "conversation job") as folder:
        loaded = probe_model(prompt_probe, job.model, device=job.device, device_map=job.device_map)
        examples = job.data.load().examples
        simulators = {
            name: ModelSpec(name=name, dtype=loaded.info.dtype, device=job.device, device_map=job.device_map).load()
            for name in job.user_simulators
        }
        records = read_records(str(job.xstest)) if job.xstest else None
        report, tables = conversation_report(
            loaded, prompt_probe, examples, job.prompts, job.config, response_probe, simulators, records
        )
        report.seconds = folder.elapsed()
        files = {name: write_csv(folder.path / f"{name}.csv", table) for name, table in tables.items()}
        return folder.finish(report, files=files, report=write_conversation_report(report, folder.path))
