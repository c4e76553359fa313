"""`latent-reward score`: a saved probe as a reward model on other data (pairs, best-of-n, or rated responses).

With the pooled probe (`run`'s best_probe) comes the within-prompt probe saved beside it (`within_probe`, or
`--within-probe`): both are scored, the within-prompt probe first, since pair accuracy is a within-prompt
quantity. When the output folder sits inside a run folder, the score result is added to that run's
results.json and its report is rendered again (no model is run for that).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import Field

from latent_reward.config import DataSpec, Device, ModelSpec, Spec
from latent_reward.data.schema import GROUP_KEY_VERSION
from latent_reward.errors import UserError
from latent_reward.experiments.reward_model import (
    NORMALIZATIONS,
    PROBE,
    WITHIN_PROBE,
    Normalization,
    ScoreResult,
    score_probes,
)
from latent_reward.experiments.run_result import PREDICTIONS_FILE, RESULTS_FILE, RunResult
from latent_reward.io import write_csv
from latent_reward.probes import Probe
from latent_reward.probes.reader import probe_model
from latent_reward.report.answers import answers
from latent_reward.report.html import write_report
from latent_reward.workflows.base import Outcome, start

RESULT_FILE = "score.json"


WITHIN_PROBE_FOLDER = "within_probe"  # beside best_probe in a run folder


class ScoreJob(Spec):
    probe: Path
    within_probe: Path | None = Field(
        None,
        description="The within-prompt probe, scored first (default: the within_probe folder beside --probe, if any).",
    )
    data: DataSpec = DataSpec()
    out: Path
    model: str | None = None  # default: the model the probe was trained on
    reference: str | None = Field(None, description="Reference model for the DPO implicit reward baseline.")
    normalization: Normalization = Field(
        "sum",
        description="DPO implicit reward: log-probabilities summed, averaged per token, or none (reference-free).",
    )
    max_tokens: int | None = Field(
        None,
        ge=8,
        description="Input truncation: the token budget (default: the probe's); log-probabilities score only pairs "
        "that fit it.",
    )  # one that fits every pair spares the log-probability predictors' truncated pairs
    n_boot: int = Field(1000, ge=100, description="Bootstrap resamples (prompts) for the intervals.")
    seed: int = 0
    device: Device = "auto"  # both models' (the probe's and the reference)
    device_map: str | None = None


def run_score(job: ScoreJob, progress: bool = True) -> Outcome[ScoreResult]:
    if job.normalization not in NORMALIZATIONS:
        raise UserError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
    probes = load_probes(job)
    with start("score", job, job.out, "score") as folder:
        dataset = job.data.load()
        loaded = probe_model(probes[PROBE], job.model, job.device, job.device_map)
        reference = (
            None
            if job.reference is None
            else ModelSpec(
                name=job.reference,
                dtype=loaded.info.dtype,
                device=job.device,
                device_map=job.device_map,
                fallback_template=loaded.info.chat_template == "fallback",
            ).load()
        )
        result, frame = score_probes(
            loaded,
            probes,
            dataset.examples,
            dataset.source,
            folder.path,
            job.max_tokens,
            reference,
            job.normalization,
            job.n_boot,
            job.seed,
            progress,
        )
        outcome = folder.finish(result, RESULT_FILE, files={"scores": write_csv(folder.path / "scores.csv", frame)})
    _add_to_run(folder.path, result)
    return outcome


def load_probes(job: ScoreJob) -> dict[str, Probe]:
    """The probes to score, the headline first: the within-prompt probe (given, or saved beside it), then the probe."""
    probe = Probe.load(job.probe)
    beside = job.probe.parent / WITHIN_PROBE_FOLDER
    folder = job.within_probe or (beside if beside.is_dir() and beside.resolve() != job.probe.resolve() else None)
    probes = {PROBE: probe} if folder is None else {WITHIN_PROBE: Probe.load(folder), PROBE: probe}
    within = probes.get(WITHIN_PROBE)
    if within is not None and (within.info.model, within.info.max_tokens) != (probe.info.model, probe.info.max_tokens):
        raise UserError(f"the within-prompt probe in {folder} reads another model or token budget than {job.probe}")
    if any(p.info.group_key_version != GROUP_KEY_VERSION for p in probes.values()):
        raise UserError(
            f"{job.probe} was saved by an older version, whose prompt ids differ from this one's, so the "
            "prompts it was trained on cannot be excluded; run `latent-reward run` (or sweep) again"
        )
    return probes


def _add_to_run(out: Path, result: ScoreResult) -> None:
    """Inside a run folder: record the score in the run's results and render its report again."""
    report = out.resolve().parent / "report"
    if not (report / RESULTS_FILE).exists():
        return
    run = RunResult.load(report)
    run.scores[out.name] = result
    run.answers = answers(run)
    run.save(report)
    predictions = pd.read_csv(report / PREDICTIONS_FILE) if (report / PREDICTIONS_FILE).exists() else None
    write_report(run, report, predictions)
