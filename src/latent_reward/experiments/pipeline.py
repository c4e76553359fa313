"""`latent-reward run`: extract (reusing a matching store), the random-init control, sweep, baselines, report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latent_reward.activations.extract import extract, request_fingerprint
from latent_reward.activations.store import MANIFEST, ActivationStore
from latent_reward.config import ExtractConfig
from latent_reward.data.summary import summarize_examples
from latent_reward.experiments.readout import reward_readout
from latent_reward.experiments.sweep import SweepOptions
from latent_reward.experiments.trajectory import reward_trajectories
from latent_reward.models.loading import LoadedModel, load_model
from latent_reward.report.html import write_report


@dataclass
class ReportInputs:
    store: ActivationStore
    random_init_store: ActivationStore | None
    options: SweepOptions
    sgd_grid: bool = True
    trajectory_model: LoadedModel | None = None  # the store's model, for token-by-token trajectories


def report_from_stores(inputs: ReportInputs, out: Path, extra: dict[str, Any], progress: bool = True) -> tuple[Path, Any]:
    """Sweep + baselines + controls (+ trajectories when a model is given) on existing stores, then the report."""
    readout = reward_readout(inputs.store, inputs.options, inputs.random_init_store, inputs.sgd_grid, progress)
    if inputs.trajectory_model is not None:
        tick = time.perf_counter()
        readout.trajectory = reward_trajectories(inputs.trajectory_model, inputs.store, readout.sweep, seed=inputs.options.seed)
        readout.timings["trajectory"] = time.perf_counter() - tick
    summary = {"source": inputs.store.manifest.get("data_source") or "data", **summarize_examples(inputs.store.examples)}
    html = write_report(readout, inputs.store, out, summary, extra)
    return html, readout


def extract_or_reuse(model: str, examples, folder: Path, config: ExtractConfig, source: str, dtype: str,
                     random_init_seed: int | None = None, **model_options) -> tuple[ActivationStore, float]:
    """An extraction into `folder`; a finished store made from the same request (model name, data,
    options) is reused without loading the model."""
    tick = time.perf_counter()
    if (folder / MANIFEST).exists():
        manifest = json.loads((folder / MANIFEST).read_text())
        wanted = request_fingerprint(examples, config, model, dtype, random_init_seed)
        if manifest.get("status") == "complete" and all(manifest["fingerprint"].get(k) == v for k, v in wanted.items()):
            return ActivationStore.open(folder), time.perf_counter() - tick
    loaded = load_model(model, dtype=dtype, random_init_seed=random_init_seed, **model_options)
    result = extract(loaded, examples, folder, config, source=source)
    return result.store, time.perf_counter() - tick
