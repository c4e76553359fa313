"""What every workflow shares: run.json, reusing a finished store, and loading the model a probe was trained on."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latent_reward.activations.extract import extract, request_fingerprint
from latent_reward.activations.store import ActivationStore, matching_complete_store
from latent_reward.config import ExtractConfig, ModelSpec
from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.io import jsonable, versions, write_json
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe


def write_run_json(folder: Path, command: str, config: Any, timings: dict[str, float], extra: dict[str, Any] | None = None) -> Path:
    """run.json: the command, its whole configuration, versions and timings: enough to reproduce the folder."""
    payload = {
        "command": command,
        "argv": sys.argv,
        "config": jsonable(config),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **(extra or {}),
    }
    return write_json(Path(folder) / "run.json", payload)


def extract_or_reuse(model: ModelSpec, examples: list[Example], folder: Path, config: ExtractConfig, source: str | None,
                     random_init_seed: int | None = None, progress: bool = True,
                     load: Callable[[], LoadedModel] | None = None) -> tuple[ActivationStore, float]:
    """An extraction into `folder`; a finished store made from the same request (model name, dtype, data,
    options) is reused without loading the model. `load` gives the model when the caller holds it already."""
    tick = time.perf_counter()
    wanted = request_fingerprint(examples, config, model.name, model.dtype, random_init_seed)
    if matching_complete_store(folder, wanted):
        return ActivationStore.open(folder), time.perf_counter() - tick
    loaded = load() if load is not None else model.load(random_init_seed=random_init_seed)
    store = extract(loaded, examples, folder, config, progress=progress, source=source).store
    return store, time.perf_counter() - tick


def probe_model(probe: Probe, model: str | None = None, device: str = "auto", device_map: str | None = None) -> LoadedModel:
    """The model a saved probe reads (or `model`), in the dtype and chat format it was trained with, on `device`
    (or spread by `device_map`)."""
    name = model or probe.info.model
    if not name:
        raise UserError("the probe does not record its model; pass --model")
    spec = ModelSpec(name=name, dtype=probe.info.model_dtype or "float32", device=device, device_map=device_map,
                     fallback_template=probe.info.chat_template == "fallback")
    loaded = spec.load()
    if probe.standardizer is not None and len(probe.standardizer.mean) != loaded.info.d_model:
        raise UserError(f"the probe reads {len(probe.standardizer.mean)}-dimensional states but {name} has "
                        f"{loaded.info.d_model}; it was trained on another model")
    return loaded
