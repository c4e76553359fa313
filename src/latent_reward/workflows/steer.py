"""`latent-reward steer`: generate with the residual stream pushed along the reward direction, and score the replies
with scorers that do not share the probe's weights. Writes results.json, steer.csv (every reply and score),
steer.html and run.json."""

from __future__ import annotations

import time
from pathlib import Path

from latent_reward.activations.store import ActivationStore
from latent_reward.config import DataSpec, Device, Spec
from latent_reward.data.splits import hash_order
from latent_reward.errors import UserError
from latent_reward.experiments.steer import SteerConfig, SteerResult, steer
from latent_reward.experiments.steer_scoring import JudgeScorer
from latent_reward.io import exclusive, prepare_output_folder, write_csv, write_json
from latent_reward.judging.cache import JudgeCache
from latent_reward.judging.client import Endpoint
from latent_reward.probes import Probe
from latent_reward.report.steer import write_steer_report
from latent_reward.workflows.common import probe_model, write_run_json


class SteerJob(Spec):
    probe: Path
    model: str | None = None  # the steered model (default: the one the probe was trained on)
    store: Path | None = None  # the probe's activation store (default: the one it was trained on)
    data: DataSpec | None = None  # prompts to steer on (default: the store's held-out prompts)
    scorer_probes: tuple[Path, ...] = ()  # probes on other models, re-reading the replies
    judge: Endpoint | None = None
    config: SteerConfig = SteerConfig()
    out: Path
    device: Device = "auto"  # every model's (the steered one and the scorer probes')
    device_map: str | None = None


def run_steer(job: SteerJob, progress: bool = True) -> SteerResult:
    started = time.perf_counter()
    probe = Probe.load(job.probe)
    store_folder = job.store or (Path(probe.info.store) if probe.info.store else None)
    if store_folder is None:
        raise UserError("the probe does not record its activation store; pass --store")
    store = ActivationStore.open(store_folder)
    if store.manifest.model.name != probe.info.model:
        raise UserError(f"the store holds states of {store.manifest.model.name}, the probe reads {probe.info.model}")
    out = prepare_output_folder(job.out)
    with exclusive(out, "steer job"):
        loaded = probe_model(probe, job.model, device=job.device, device_map=job.device_map)
        conversations = held_out_prompts(store, probe, job)
        readers = []
        for folder in job.scorer_probes:
            other = Probe.load(folder)
            readers.append((other, probe_model(other, device=job.device, device_map=job.device_map)))
        cache = JudgeCache(out / "judge-cache.sqlite") if job.judge is not None else None
        try:
            judge = JudgeScorer(job.judge, cache) if cache is not None else None
            result, frame = steer(loaded, store, probe, conversations, job.config, readers, judge, progress)
        finally:
            if cache is not None:
                cache.close()
        result.seconds = time.perf_counter() - started
        write_csv(out / "steer.csv", frame)
        write_json(out / "results.json", result)
        write_steer_report(result, out)
        write_run_json(out, "steer", job, {"total": result.seconds})
        return result


def held_out_prompts(store: ActivationStore, probe: Probe, job: SteerJob) -> list[list[dict[str, str]]]:
    """Prompts the probe was neither trained nor validated on: from --data, else from the store; a seeded choice."""
    excluded = probe.info.excluded_groups()
    examples = job.data.load().examples if job.data else store.examples
    by_group = {e.group: e.prompt_messages for e in examples if e.group not in excluded}
    if not by_group:
        raise UserError("no prompt left that the probe was not trained or validated on")
    chosen = hash_order(list(by_group), job.config.seed)[: job.config.prompts]
    return [by_group[g] for g in chosen]
