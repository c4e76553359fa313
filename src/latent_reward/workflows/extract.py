"""`latent-reward extract`: one activation store from data and a model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from latent_reward.activations.extract import ExtractResult, extract
from latent_reward.config import DataSpec, ExtractConfig, ModelSpec, Spec
from latent_reward.errors import UserError
from latent_reward.positions import parse_layers
from latent_reward.workflows.common import write_run_json


class ExtractJob(Spec):
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec(dtype="float32")
    extract: ExtractConfig = ExtractConfig()
    layers: str = "all"  # 'all' or comma-separated residual indices; checked against the model once it is loaded
    token_layers: str | None = None
    random_init: int | None = None  # a randomly initialised copy of the model with this seed (a control)
    out: Path


@dataclass
class ExtractOutcome:
    result: ExtractResult
    skipped: dict[str, int]
    load_seconds: float


def run_extract(job: ExtractJob, progress: bool = True) -> ExtractOutcome:
    started = time.perf_counter()
    if job.out.exists() and not job.out.is_dir():
        raise UserError(f"--out {job.out} is an existing file, not a folder; choose a folder path")
    dataset = job.data.load()
    loaded = job.model.load(random_init_seed=job.random_init)
    n_layers = loaded.info.n_layers
    config = job.extract.model_copy(update={
        "layers": None if job.layers == "all" else parse_layers(job.layers, n_layers),
        "token_layers": parse_layers(job.token_layers, n_layers) if job.token_layers else ()})
    load_seconds = time.perf_counter() - started
    result = extract(loaded, dataset.examples, job.out, config, progress=progress, source=dataset.source)
    write_run_json(job.out, "extract", job, {"load": load_seconds, "extract": result.seconds, "total": time.perf_counter() - started},
                   {"skipped_records": dataset.skipped, "stats": result.store.manifest.stats})
    return ExtractOutcome(result, dataset.skipped, load_seconds)
