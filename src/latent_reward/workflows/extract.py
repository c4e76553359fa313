"""`latent-reward extract`: one activation store from data and a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from latent_reward.activations.extract import ExtractResult, extract
from latent_reward.config import DataSpec, ExtractConfig, ModelSpec, Spec
from latent_reward.positions import parse_layers
from latent_reward.workflows.base import Outcome, start


class ExtractJob(Spec):
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec(dtype="float32")
    extract: ExtractConfig = ExtractConfig()
    layers: str = Field(
        "all", description="'all' or comma-separated residual indices (0 = embeddings)."
    )  # checked against the model once it is loaded
    token_layers: str | None = Field(
        None, description="Layers kept for every response token (with response_tokens; default: the last)."
    )
    random_init: int | None = Field(
        None, description="Use a randomly initialised copy of the model with this seed (a control)."
    )
    out: Path


@dataclass(frozen=True)
class Extraction:
    """What `extract` made (the store, its timings and shard counts) and the records the data's loader skipped."""

    extracted: ExtractResult
    skipped: dict[str, int]


def run_extract(job: ExtractJob, progress: bool = True) -> Outcome[Extraction]:
    # not locked here: the extraction holds the store folder's lock itself (rank 0 of a data-parallel run)
    with start("extract", job, job.out) as folder:
        with folder.timed("load"):
            dataset = job.data.load()
            loaded = job.model.load(random_init_seed=job.random_init)
        n_layers = loaded.info.n_layers
        config = job.extract.model_copy(
            update={
                "layers": None if job.layers == "all" else parse_layers(job.layers, n_layers),
                "token_layers": parse_layers(job.token_layers, n_layers) if job.token_layers else (),
            }
        )
        result = extract(loaded, dataset.examples, folder.path, config, progress=progress, source=dataset.source)
        folder.timings["extract"] = result.seconds
        return folder.finish(
            Extraction(result, dataset.skipped),
            results=None,
            extra={"skipped_records": dataset.skipped, "stats": result.store.manifest.stats},
        )
