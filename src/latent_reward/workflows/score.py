"""`latent-reward score`: a saved probe as a reward model on other data (pairs, best-of-n, or rated responses).

With the pooled probe (`run`'s best_probe) comes the within-prompt probe saved beside it (`within_probe`, or
`--within-probe`): both are scored, the within-prompt probe first, since pair accuracy is a within-prompt
quantity. When the output folder sits inside a run folder, the score result is added to that run's
results.json and its report is rendered again (no model is run for that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from latent_reward.config import DataSpec, Device, ExtractConfig, ModelSpec, Spec
from latent_reward.data.schema import GROUP_KEY_VERSION
from latent_reward.errors import UserError
from latent_reward.evaluation.baselines import length_features
from latent_reward.evaluation.results import LENGTH, LOGPROB
from latent_reward.experiments.reward_model import (IMPLICIT_REWARD, NORMALIZATIONS, PROBE, WITHIN_PROBE, ScoreResult,
                                                    best_of_n, implicit_reward, pair_accuracy, score_examples, transfer)
from latent_reward.experiments.run_result import PREDICTIONS_FILE, RESULTS_FILE, RunResult
from latent_reward.io import exclusive, prepare_output_folder, write_csv, write_json
from latent_reward.probes import Probe
from latent_reward.report.answers import answers
from latent_reward.report.html import write_report
from latent_reward.workflows.common import probe_model, write_run_json

RESULT_FILE = "score.json"


WITHIN_PROBE_FOLDER = "within_probe"  # beside best_probe in a run folder


class ScoreJob(Spec):
    probe: Path
    within_probe: Path | None = None  # default: the within_probe folder beside `probe`, when there is one
    data: DataSpec = DataSpec()
    out: Path
    model: str | None = None  # default: the model the probe was trained on
    reference: str | None = None  # reference model for DPO's implicit reward
    normalization: str = "sum"
    max_tokens: int | None = Field(None, ge=8)  # token budget (default: the probe's); one that fits every pair spares
    # the log-probability predictors' truncated pairs
    n_boot: int = 1000
    seed: int = 0
    device: Device = "auto"  # both models' (the probe's and the reference)
    device_map: str | None = None


def run_score(job: ScoreJob, progress: bool = True) -> ScoreResult:
    if job.normalization not in NORMALIZATIONS:
        raise UserError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
    probes = load_probes(job)
    probe = probes[PROBE]
    out = prepare_output_folder(job.out)
    with exclusive(out, "score"):
        dataset = job.data.load()
        loaded = probe_model(probe, job.model, job.device, job.device_map)
        store, scores = score_examples(loaded, probes, dataset.examples, out / "store", progress=progress,
                                       source=dataset.source, max_tokens=job.max_tokens)
        truncated = store.stat("truncated").astype(bool)
        logprob_sum = np.where(truncated, np.nan, store.stat("logprob_sum"))  # a truncated text's is not log pi(y|x)
        predictors = {**scores, LENGTH: length_features([e.response for e in store.examples])[:, 0],
                      LOGPROB: np.where(truncated, np.nan, store.stat("logprob_mean").astype(np.float64))}
        if job.reference:
            implicit, reference_truncated = _implicit(job, probe, dataset, loaded, store, out, progress)
            truncated = truncated | reference_truncated
            predictors[f"{IMPLICIT_REWARD} ({job.normalization})"] = np.where(truncated, np.nan, implicit)
        elif job.normalization == "none":
            predictors[f"{IMPLICIT_REWARD} (none)"] = implicit_reward(logprob_sum, None, normalization="none")
        excluded = set().union(*(p.info.excluded_groups() for p in probes.values()))
        keep = np.array([g not in excluded for g in store.groups])
        if not keep.any():
            raise UserError("every prompt in this data was used to train or validate the probe; score it on other prompts")
        result = ScoreResult(data=dataset.source, examples=int(keep.sum()), excluded_prompts=len(excluded & set(store.groups)),
                             probe=probe.info.provenance(),
                             probes=list(probes), truncated=int((truncated & keep).sum()))
        result.pair_accuracy = pair_accuracy(store, predictors, keep, job.n_boot, job.seed, truncated,
                                             reference=next(iter(probes)))
        if not result.pair_accuracy:
            result.transfer = transfer(store, predictors, keep, job.n_boot, job.seed)
            result.best_of_n = best_of_n(store, predictors, keep, job.n_boot, job.seed)
        frame = pd.DataFrame({"id": store.ids, "group": store.groups, "rating": store.ratings, "counted": keep,
                              **predictors, "truncated": truncated})
        write_csv(out / "scores.csv", frame)
        write_json(out / RESULT_FILE, result)
        write_run_json(out, "score", job, {})
    _add_to_run(out, result)
    return result


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
        raise UserError(f"{job.probe} was saved by an older version, whose prompt ids differ from this one's, so the "
                        "prompts it was trained on cannot be excluded; run `latent-reward run` (or sweep) again")
    return probes


def _implicit(job: ScoreJob, probe: Probe, dataset, loaded, store, out: Path, progress: bool
              ) -> tuple[np.ndarray, np.ndarray]:
    """DPO's implicit reward: the policy's and the reference's summed log-probabilities (each over the response and its
    end-of-turn token, under its own tokenizer); and which responses the reference's token budget truncated."""
    from latent_reward.activations.extract import extract

    reference = ModelSpec(name=job.reference, dtype=loaded.info.dtype, device=job.device, device_map=job.device_map,
                          fallback_template=loaded.info.chat_template == "fallback").load()
    config = ExtractConfig(positions=("eot",), layers=(0,), max_tokens=store.manifest.max_tokens,
                           logprobs=True)
    reference_store = extract(reference, dataset.examples, out / "store-reference", config, progress=progress).store
    # per-token averages over the response's tokens and the end-of-turn token
    counts = np.stack([s.stat("response_tokens_count") for s in (store, reference_store)]).astype(np.float64) + 1
    return (implicit_reward(store.stat("logprob_sum"), reference_store.stat("logprob_sum"), counts, job.normalization),
            reference_store.stat("truncated").astype(bool))


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
