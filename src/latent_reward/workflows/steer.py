"""`latent-reward steer`: generate with the residual stream pushed along the reward direction, and score the replies
with scorers that do not share the probe's weights. Writes results.json, steer.csv (every reply and score),
steer.html and run.json."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from latent_reward.activations.store import ActivationStore
from latent_reward.config import DataSpec, Device, Spec
from latent_reward.errors import UserError
from latent_reward.experiments.steer import SteerConfig, SteerResult, steer
from latent_reward.experiments.steer_scoring import JudgeScorer
from latent_reward.io import write_csv
from latent_reward.judging.cache import JudgeCache
from latent_reward.judging.client import Endpoint
from latent_reward.probes import Probe
from latent_reward.probes.reader import ProbeReader, probe_model
from latent_reward.report.steer import write_steer_report
from latent_reward.workflows.base import Outcome, start


class SteerJob(Spec):
    probe: Path
    model: str | None = None  # the steered model (default: the one the probe was trained on)
    store: Path | None = Field(None, description="The probe's activation store (default: the one it was trained on).")
    data: DataSpec | None = None  # prompts to steer on (default: the store's held-out prompts)
    scorer_probes: tuple[Path, ...] = Field(
        (), description="A probe on another model that scores the replies (repeatable)."
    )
    judge: Endpoint | None = None
    config: SteerConfig = SteerConfig()
    out: Path
    device: Device = "auto"  # every model's (the steered one and the scorer probes')
    device_map: str | None = None


def run_steer(job: SteerJob, progress: bool = True) -> Outcome[SteerResult]:
    probe = Probe.load(job.probe)
    store_folder = job.store or (Path(probe.info.store) if probe.info.store else None)
    if store_folder is None:
        raise UserError("the probe does not record its activation store; pass --store")
    store = ActivationStore.open(store_folder)
    if store.manifest.model.name != probe.info.model:
        raise UserError(f"the store holds states of {store.manifest.model.name}, the probe reads {probe.info.model}")
    with start("steer", job, job.out, "steer job") as folder:
        loaded = probe_model(probe, job.model, device=job.device, device_map=job.device_map)
        examples = job.data.load().examples if job.data else store.examples
        readers = [
            ProbeReader.load(Probe.load(other), device=job.device, device_map=job.device_map)
            for other in job.scorer_probes
        ]
        cache = JudgeCache(folder.path / "judge-cache.sqlite") if job.judge is not None else None
        try:
            judge = JudgeScorer(job.judge, cache) if job.judge is not None and cache is not None else None
            result, frame = steer(loaded, store, probe, examples, job.config, readers, judge, progress)
        finally:
            if cache is not None:
                cache.close()
        result.seconds = folder.elapsed()
        table = write_csv(folder.path / "steer.csv", frame)
        return folder.finish(result, files={"replies": table}, report=write_steer_report(result, folder.path))
