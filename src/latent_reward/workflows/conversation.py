"""`latent-reward conversation`: does the model steer the user? Writes results.json, replies.csv, user_turns.csv,
follow_ups.csv, conversation.html and run.json."""

from __future__ import annotations

import time
from pathlib import Path

from latent_reward.config import DataSpec, Device, ModelSpec, Spec
from latent_reward.data.records import read_records
from latent_reward.data.splits import hash_order
from latent_reward.errors import UserError
from latent_reward.evaluation.results import Result
from latent_reward.experiments.conversation import (ConversationConfig, ConversationResult, XSTestResult, adjust,
                                                    conversation, xstest)
from latent_reward.io import exclusive, prepare_output_folder, write_csv, write_json
from latent_reward.probes import Probe
from latent_reward.report.conversation import write_conversation_report
from latent_reward.workflows.common import probe_model


class ConversationJob(Spec):
    prompt_probe: Path  # V: a prompt probe at assistant_start (a run's prompt_probe folder)
    model: str | None = None  # the model V reads (default: the one it was trained on)
    response_probe: Path | None = None  # the response-level probe, for the quality control of the preference measure
    data: DataSpec  # conversations ending in a user turn (their responses, if any, are the "data reply")
    xstest: Path | None = None  # XSTest's labelled completions, for refusal vs redirect
    user_simulators: tuple[str, ...] = ()  # other models writing the user's turn (besides the model itself)
    prompts: int = 24
    config: ConversationConfig = ConversationConfig()
    out: Path
    device: Device = "auto"  # every model's (the probe's and the user simulators')
    device_map: str | None = None


class ConversationReport(Result):
    result: ConversationResult
    xstest: XSTestResult | None = None
    seconds: float = 0.0


def run_conversation(job: ConversationJob) -> ConversationReport:
    started = time.perf_counter()
    prompt_probe = Probe.load(job.prompt_probe)
    if prompt_probe.info.position != "assistant_start":
        raise UserError("--prompt-probe must read assistant_start (a run's prompt_probe folder)")
    out = prepare_output_folder(job.out)
    with exclusive(out, "conversation job"):
        loaded = probe_model(prompt_probe, job.model, device=job.device, device_map=job.device_map)
        response_probe = Probe.load(job.response_probe) if job.response_probe else None
        excluded = prompt_probe.info.excluded_groups()
        examples = [e for e in job.data.load().examples if e.group not in excluded]  # prompts V was not fitted or chosen on
        if not examples:
            raise UserError("every prompt in this data was used to train or validate the prompt probe; use other prompts")
        by_group = {e.group: e for e in examples}
        chosen = [by_group[g] for g in hash_order(list(by_group), job.config.seed)[: job.prompts]]
        simulators = {name: ModelSpec(name=name, dtype=loaded.info.dtype, device=job.device, device_map=job.device_map).load()
                      for name in job.user_simulators}
        result, tables = conversation(loaded, prompt_probe, [e.prompt_messages for e in chosen], [e.response for e in chosen],
                                      job.config, response_probe, simulators)
        xs = xstest(loaded, prompt_probe, read_records(str(job.xstest)), job.config, response_probe) if job.xstest else None
        adjust(result, xs)  # one family: the XSTest contrasts join the secondary ones
        report = ConversationReport(result=result, xstest=xs, seconds=time.perf_counter() - started)
        for name, table in tables.items():
            write_csv(out / f"{name}.csv", table)
        write_json(out / "results.json", report)
        write_conversation_report(report, out)
        from latent_reward.workflows.common import write_run_json

        write_run_json(out, "conversation", job, {"total": report.seconds})
        return report
