"""`latent-reward run` and `latent-reward sweep`: extraction (reused when it matches), the readout, prompt-only,
trajectories, and the result folder (results.json, predictions.csv, report, best_probe, within_probe, run.json)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from latent_reward.activations.extract import extract, request_fingerprint
from latent_reward.activations.store import ActivationStore, matching_complete_store
from latent_reward.analysis.crossfit import CrossFit
from latent_reward.analysis.sketch import sketch_view
from latent_reward.analysis.sweep import SweepFit, fit_within_probe
from latent_reward.config import DataSpec, ExtractConfig, ModelSpec, Spec
from latent_reward.data.formats import Dataset
from latent_reward.data.schema import Example
from latent_reward.data.summary import summarize_examples
from latent_reward.experiments.prompt_only import PromptOnlyConfig, fit_prompt_probe, prompt_only
from latent_reward.experiments.readout import WITHIN_PREDICTIONS, ReadoutConfig, reward_readout
from latent_reward.experiments.run_result import PREDICTIONS_FILE, RESULTS_FILE, WITHIN_COLUMN, RunResult, StoreSummary
from latent_reward.experiments.trajectory import TrajectoryConfig, reward_trajectories
from latent_reward.io import write_csv
from latent_reward.models.devices import distributed_state
from latent_reward.models.loading import LoadedModel
from latent_reward.probes.compute import analysis_device, fit_device
from latent_reward.report.answers import answers
from latent_reward.report.html import write_report
from latent_reward.report.tables import COMPARISONS_FILE, GRID_FILE, comparisons_frame, grid_frame
from latent_reward.workflows.base import JobFolder, Outcome, start
from latent_reward.workflows.score import WITHIN_PROBE_FOLDER

REPORT_FOLDER = "report"  # inside a run folder: results.json, predictions.csv, report.html and its figures


class RunConfig(Spec):
    """The main job, whole: saved to run.json and results.json."""

    data: DataSpec = DataSpec(limit=600)
    model: ModelSpec = ModelSpec()
    extract: ExtractConfig = ExtractConfig(max_tokens=512, logprobs=True)
    readout: ReadoutConfig = ReadoutConfig()
    random_init_control: bool = Field(
        True, description="Also extract and probe a randomly initialised copy of the model."
    )
    random_init_depth: float = Field(
        1.0,
        gt=0,
        le=1,
        description="The random-init control reads residual indices 0..ceil(depth x layers) and stops its forward "
        "there: 0.5 halves its cost (on SmolLM2 its best layers were the first few), 1 chooses among every layer "
        "as the probe does.",
    )

    @model_validator(mode="after")
    def _depth_needs_every_layer(self) -> RunConfig:
        if self.random_init_depth < 1 and self.extract.layers is not None:
            raise ValueError("--random-init-depth reads the first layers of every layer; it cannot cut a layer list")
        return self

    trajectory: bool = Field(True, description="Reward token by token on held-out responses (runs the model again).")
    trajectory_config: TrajectoryConfig = TrajectoryConfig()
    out: Path = Field(Path("runs/latest"))


class SweepJob(Spec):
    """`sweep`: the readout on stores that already exist."""

    store: Path
    out: Path
    random_init_store: Path | None = Field(None, description="A store of the random-init control, same data.")
    readout: ReadoutConfig = ReadoutConfig()


def run(config: RunConfig | None = None, progress: bool = True) -> Outcome[RunResult] | None:
    """Everything `latent-reward run` does, from Python: `lr.run(lr.RunConfig(data=lr.DataSpec(source=...)))`.

    Under `accelerate launch` with several processes each process extracts its share of both stores' shards; the first
    one then analyses them and writes the run folder, and the others return None once their shards are written."""
    config = config or RunConfig()
    fit_device(config.readout.device)  # a device the fits cannot use is refused now, not after the extraction
    state = distributed_state()
    if state is not None and not state.is_main_process:
        state.wait_for_everyone()  # the first process holds the run folder (if it could not, the launch ends here)
        _extract_stores(config, config.data.load(), contextlib.nullcontext, progress=False)
        return None
    with start("run", config, config.out, "run") as folder:
        if state is not None:
            state.wait_for_everyone()
        dataset = config.data.load()
        random_store, store, real_model = _extract_stores(config, dataset, folder.timed, progress)
        trajectory_model = real_model() if config.trajectory else None
        if trajectory_model is None:
            real_model.cache_clear()  # no trajectories: the model's memory (a GPU's, maybe) is the analysis's now
        result, files = analyse(
            store,
            random_store,
            config.readout,
            folder.path,
            config,
            dataset.skipped,
            folder,
            trajectory_model,
            config.trajectory_config,
            progress,
        )
        return folder.finish(
            result, f"{REPORT_FOLDER}/{RESULTS_FILE}", files, extra={"skipped_records": dataset.skipped}
        )


def _extract_stores(
    config: RunConfig, dataset: Dataset, timed: Callable[[str], contextlib.AbstractContextManager], progress: bool
) -> tuple[ActivationStore | None, ActivationStore, functools._lru_cache_wrapper[LoadedModel]]:
    """The random-init control's store (first: the random copy is gone before the real model is loaded) and the
    model's, each extracted or reused; and the real model, loaded once when first needed (extraction, trajectories).
    `timed(stage)` times each extraction."""
    random_store = None
    if config.random_init_control:
        with timed("extract_random_init"):
            random_store = extract_or_reuse(
                config.model,
                dataset.examples,
                config.out / "store-random-init",
                ExtractConfig.model_validate(
                    {**config.extract.model_dump(), "logprobs": False, "depth": config.random_init_depth}
                ),
                dataset.source,
                random_init_seed=config.readout.sweep.seed,
                progress=progress,
            )
    real_model = functools.cache(config.model.load)
    with timed("extract"):
        store = extract_or_reuse(
            config.model,
            dataset.examples,
            config.out / "store",
            config.extract,
            dataset.source,
            progress=progress,
            load=real_model,
        )
    return random_store, store, real_model


def sweep_stores(job: SweepJob, progress: bool = True) -> Outcome[RunResult]:
    """`latent-reward sweep`: the readout, prompt-only and report on existing stores."""
    fit_device(job.readout.device)  # refused before the output folder is made
    with start("sweep", job, job.out, "report") as folder:
        store = ActivationStore.open(job.store)
        random_store = ActivationStore.open(job.random_init_store) if job.random_init_store else None
        result, files = analyse(
            store,
            random_store,
            job.readout,
            folder.path,
            job,
            {},
            folder,
            None,
            None,
            progress,
            report_folder=folder.path,
        )
        return folder.finish(result, RESULTS_FILE, files)


def extract_or_reuse(
    model: ModelSpec,
    examples: list[Example],
    folder: Path,
    config: ExtractConfig,
    source: str | None,
    random_init_seed: int | None = None,
    progress: bool = True,
    load: Callable[[], LoadedModel] | None = None,
) -> ActivationStore:
    """An extraction into `folder`; a finished store made from the same request (model name, dtype, data,
    options) is reused without loading the model. `load` gives the model when the caller holds it already."""
    wanted = request_fingerprint(examples, config, model.name, model.dtype, random_init_seed)
    if matching_complete_store(folder, wanted):
        return ActivationStore.open(folder)
    loaded = load() if load is not None else model.load(random_init_seed=random_init_seed)
    return extract(loaded, examples, folder, config, progress=progress, source=source).store


def analyse(
    store: ActivationStore,
    random_store: ActivationStore | None,
    readout_config: ReadoutConfig,
    out: Path,
    config: Spec,
    skipped: dict,
    folder: JobFolder,
    trajectory_model: LoadedModel | None,
    trajectory_config: TrajectoryConfig | None,
    progress: bool,
    report_folder: Path | None = None,
) -> tuple[RunResult, dict[str, Path | None]]:
    """Readout, prompt-only and trajectories on finished stores; writes the report (all but results.json, which the
    job writes) and the probes; returns the result and the files."""
    with analysis_device(readout_config.device):  # the fits' device (the CPU by default)
        # one view per store, so the readout and prompt-only share the sketches of wide states
        view, random_view = sketch_view(store, readout_config.sketch), sketch_view(random_store, readout_config.sketch)
        readout, fit, crossfit = reward_readout(view, readout_config, random_view, progress)
        folder.timings.update(readout.timings)
        sweep_config = readout_config.sweep
        with folder.timed("prompt_only"):
            expected = (
                None
                if fit.target.within
                else prompt_only(
                    view,
                    PromptOnlyConfig(
                        target=sweep_config.target,
                        seed=sweep_config.seed,
                        n_boot=sweep_config.n_boot,
                        folds=readout_config.folds,
                        sketch=readout_config.sketch,
                    ),
                    fit,
                    random_view,
                    progress=False,
                )
            )
        trajectory = None
        if trajectory_model is not None:
            with folder.timed("trajectory"):
                trajectory = reward_trajectories(trajectory_model, store, fit, trajectory_config)
        source = store.manifest.data_source or "data"
        result = RunResult(
            command=type(config).__name__,
            model=store.manifest.model,
            data=summarize_examples(store.examples, source=source, skipped=skipped),
            readout=readout,
            prompt_only=expected,
            trajectory=trajectory,
            store=StoreSummary.of(store),
            config=config.model_dump(mode="json"),
            timings=folder.timings,
        )
        result.answers = answers(result)
        report_folder = report_folder or out / REPORT_FOLDER
        report_folder.mkdir(parents=True, exist_ok=True)
        predictions = predictions_frame(store, fit, crossfit)
        files: dict[str, Path | None] = {"predictions": write_csv(report_folder / PREDICTIONS_FILE, predictions)}
        files["grid"] = write_csv(report_folder / GRID_FILE, grid_frame(readout.sweep))
        files["comparisons"] = write_csv(report_folder / COMPARISONS_FILE, comparisons_frame(readout))
        files["report"] = write_report(result, report_folder, predictions)
        files["best_probe"] = fit.best_probe.save(out / "best_probe")
        within_probe = None if fit.target.within else fit_within_probe(view, fit, sweep_config.positions)
        files[WITHIN_PROBE_FOLDER] = within_probe.save(out / WITHIN_PROBE_FOLDER) if within_probe is not None else None
        prompt_probe = fit_prompt_probe(store, fit, expected) if expected is not None else None
        files["prompt_probe"] = prompt_probe.save(out / "prompt_probe") if prompt_probe is not None else None
        return result, files


def predictions_frame(store: ActivationStore, fit: SweepFit, crossfit: CrossFit) -> pd.DataFrame:
    """Every kept example's cross-fitted probe predictions (the pooled probe's, the within-prompt probe's where there is
    one: empty on prompts with one response, and the restricted choices': layer 0, the best layer at each position)
    and fold, for paired comparisons across runs."""
    masks = fit.plan.masks
    within = crossfit.predictions.get(WITHIN_PREDICTIONS)
    return pd.DataFrame(
        {
            "id": [store.examples[i].id for i in fit.target.rows],
            "group": fit.target.groups,
            "rating": fit.target.y,
            "fold": crossfit.folds,
            "probe": crossfit.predictions["probe"],
            **({WITHIN_COLUMN: within} if within is not None else {}),
            **{
                name: values
                for name, values in crossfit.predictions.items()  # layer 0, each position
                if name not in ("probe", WITHIN_PREDICTIONS)
            },
            "split": np.select([masks["train"], masks["val"]], ["train", "val"], "test"),
        }
    )
