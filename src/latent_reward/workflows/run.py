"""`latent-reward run` and `latent-reward sweep`: extraction (reused when it matches), the readout, prompt-only,
trajectories, and the result folder (results.json, predictions.csv, report, best_probe, within_probe, run.json)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from latent_reward.activations.store import ActivationStore
from latent_reward.analysis.crossfit import CrossFit
from latent_reward.analysis.sketch import sketch_view
from latent_reward.analysis.sweep import SweepFit, fit_within_probe
from latent_reward.config import DataSpec, ExtractConfig, ModelSpec, Spec
from latent_reward.data.summary import summarize_examples
from latent_reward.experiments.prompt_only import PromptOnlyConfig, fit_prompt_probe, prompt_only
from latent_reward.experiments.readout import WITHIN_PREDICTIONS, ReadoutConfig, reward_readout
from latent_reward.experiments.run_result import PREDICTIONS_FILE, WITHIN_COLUMN, RunResult
from latent_reward.experiments.trajectory import TrajectoryConfig, reward_trajectories
from latent_reward.io import exclusive, prepare_output_folder, write_csv
from latent_reward.models.loading import LoadedModel
from latent_reward.report.answers import answers
from latent_reward.report.html import write_report
from latent_reward.workflows.common import extract_or_reuse, write_run_json
from latent_reward.workflows.score import WITHIN_PROBE_FOLDER


class RunConfig(Spec):
    """The main job, whole: saved to run.json and results.json."""

    data: DataSpec = DataSpec(limit=600)
    model: ModelSpec = ModelSpec()
    extract: ExtractConfig = ExtractConfig(max_tokens=512, logprobs=True)
    readout: ReadoutConfig = ReadoutConfig()
    random_init_control: bool = True  # also extract and probe a randomly initialised copy of the model
    trajectory: bool = True  # reward token by token on held-out responses (runs the model again)
    trajectory_config: TrajectoryConfig = TrajectoryConfig()
    out: Path = Field(Path("runs/latest"))


class SweepJob(Spec):
    """`sweep`: the readout on stores that already exist."""

    store: Path
    out: Path
    random_init_store: Path | None = None
    readout: ReadoutConfig = ReadoutConfig()


@dataclass
class RunOutcome:
    result: RunResult
    folder: Path
    report: Path
    probe_folder: Path
    within_probe_folder: Path | None = None  # the within-prompt probe (`score` ranks pairs with it first)


def run(config: RunConfig | None = None, progress: bool = True) -> RunOutcome:
    """Everything `latent-reward run` does, from Python: `lr.run(lr.RunConfig(data=lr.DataSpec(source=...)))`."""
    config = config or RunConfig()
    started = time.perf_counter()
    out = prepare_output_folder(config.out)
    with exclusive(out, "run"):
        dataset = config.data.load()
        timings: dict[str, float] = {}
        random_store = None
        if config.random_init_control:  # first: the random copy is gone before the real model is loaded
            random_store, timings["extract_random_init"] = extract_or_reuse(
                config.model, dataset.examples, out / "store-random-init", config.extract.model_copy(update={"logprobs": False}),
                dataset.source, random_init_seed=config.readout.sweep.seed, progress=progress)
        real_model = functools.cache(config.model.load)  # loaded once, when first needed, for extraction and trajectories
        store, timings["extract"] = extract_or_reuse(config.model, dataset.examples, out / "store", config.extract, dataset.source,
                                                     progress=progress, load=real_model)
        trajectory_model = real_model() if config.trajectory else None
        outcome = analyse(store, random_store, config.readout, out, config, dataset.skipped, timings, trajectory_model,
                          config.trajectory_config, progress)
        timings["total"] = outcome.result.timings["total"] = time.perf_counter() - started  # results.json is written already
        write_run_json(out, "run", config, timings, {"skipped_records": dataset.skipped})
        return outcome


def sweep_stores(job: SweepJob, progress: bool = True) -> RunOutcome:
    """`latent-reward sweep`: the readout, prompt-only and report on existing stores."""
    started = time.perf_counter()
    out = prepare_output_folder(job.out)
    with exclusive(out, "report"):
        store = ActivationStore.open(job.store)
        random_store = ActivationStore.open(job.random_init_store) if job.random_init_store else None
        timings: dict[str, float] = {}
        outcome = analyse(store, random_store, job.readout, out, job, {}, timings, None, None, progress, report_folder=out)
        timings["total"] = time.perf_counter() - started
        write_run_json(out, "sweep", job, timings)
        return outcome


def analyse(store: ActivationStore, random_store: ActivationStore | None, readout_config: ReadoutConfig, out: Path, config: Spec,
            skipped: dict, timings: dict[str, float], trajectory_model: LoadedModel | None, trajectory_config: TrajectoryConfig | None,
            progress: bool, report_folder: Path | None = None) -> RunOutcome:
    """Readout, prompt-only and trajectories on finished stores; writes the report folder and the best probe."""
    # one view per store, so the readout and prompt-only share the sketches of wide states
    view, random_view = sketch_view(store, readout_config.sketch), sketch_view(random_store, readout_config.sketch)
    readout, fit, crossfit = reward_readout(view, readout_config, random_view, progress)
    timings.update(readout.timings)
    tick = time.perf_counter()
    sweep_config = readout_config.sweep
    expected = None if fit.target.within else prompt_only(
        view, PromptOnlyConfig(target=sweep_config.target, seed=sweep_config.seed, n_boot=sweep_config.n_boot,
                                folds=readout_config.folds, sketch=readout_config.sketch), fit, random_view, progress=False)
    timings["prompt_only"] = time.perf_counter() - tick
    trajectory = None
    if trajectory_model is not None:
        tick = time.perf_counter()
        trajectory = reward_trajectories(trajectory_model, store, fit, trajectory_config)
        timings["trajectory"] = time.perf_counter() - tick
    source = store.manifest.get("data_source") or "data"
    result = RunResult(
        command=type(config).__name__, model=store.manifest["model"],
        data=summarize_examples(store.examples, source=source, skipped=skipped), readout=readout, prompt_only=expected,
        trajectory=trajectory, store={"folder": str(store.folder), "fingerprint": store.manifest["fingerprint"],
                                      "stats": store.manifest.get("stats")},
        config=config.model_dump(mode="json"), timings=timings)
    result.answers = answers(result)
    report_folder = report_folder or out / "report"
    report_folder.mkdir(parents=True, exist_ok=True)
    predictions = predictions_frame(store, fit, crossfit)
    write_csv(report_folder / PREDICTIONS_FILE, predictions)
    result.save(report_folder)
    html = write_report(result, report_folder, predictions)
    probe_folder = fit.best_probe.save(out / "best_probe")
    within_probe = None if fit.target.within else fit_within_probe(view, fit, sweep_config.positions)
    within_folder = within_probe.save(out / WITHIN_PROBE_FOLDER) if within_probe is not None else None
    prompt_probe = fit_prompt_probe(store, fit, expected) if expected is not None else None
    if prompt_probe is not None:
        prompt_probe.save(out / "prompt_probe")
    return RunOutcome(result, out, html, probe_folder, within_folder)


def predictions_frame(store: ActivationStore, fit: SweepFit, crossfit: CrossFit) -> pd.DataFrame:
    """Every kept example's cross-fitted probe predictions (the pooled probe's, and the within-prompt probe's where
    there is one: empty on prompts with one response) and fold, for paired comparisons across runs."""
    masks = fit.plan.masks
    within = crossfit.predictions.get(WITHIN_PREDICTIONS)
    return pd.DataFrame({"id": [store.examples[i].id for i in fit.target.rows], "group": fit.target.groups, "rating": fit.target.y,
                         "fold": crossfit.folds, "probe": crossfit.predictions["probe"],
                         **({WITHIN_COLUMN: within} if within is not None else {}),
                         "split": np.select([masks["train"], masks["val"]], ["train", "val"], "test")})
