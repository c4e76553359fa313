"""`latent-reward score`: a saved probe as a reward model on other data (pairs, best-of-n, or rated responses).

When the output folder sits inside a run folder, the score result is added to that run's
results.json and its report is rendered again (no model is run for that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from latent_reward.config import DataSpec, Device, ExtractConfig, ModelSpec, Spec
from latent_reward.errors import UserError
from latent_reward.experiments.reward_model import (IMPLICIT_REWARD, NORMALIZATIONS, PROBE, ScoreResult, best_of_n, excluded_groups,
                                                    implicit_reward, pair_accuracy, score_examples, transfer)
from latent_reward.experiments.run_result import PREDICTIONS_FILE, RESULTS_FILE, RunResult
from latent_reward.io import exclusive, prepare_output_folder, write_csv, write_json
from latent_reward.probes import Probe
from latent_reward.report.answers import answers
from latent_reward.report.html import write_report
from latent_reward.workflows.common import probe_model, write_run_json

RESULT_FILE = "score.json"


class ScoreJob(Spec):
    probe: Path
    data: DataSpec = DataSpec()
    out: Path
    model: str | None = None  # default: the model the probe was trained on
    reference: str | None = None  # reference model for DPO's implicit reward
    normalization: str = "sum"
    n_boot: int = 1000
    seed: int = 0
    device: Device = "auto"  # both models' (the probe's and the reference)
    device_map: str | None = None


def run_score(job: ScoreJob, progress: bool = True) -> ScoreResult:
    if job.normalization not in NORMALIZATIONS:
        raise UserError(f"--normalization must be one of {', '.join(NORMALIZATIONS)}")
    probe = Probe.load(job.probe)
    out = prepare_output_folder(job.out)
    with exclusive(out, "score"):
        dataset = job.data.load()
        loaded = probe_model(probe, job.model, job.device, job.device_map)
        store, scores = score_examples(loaded, probe, dataset.examples, out / "store", progress=progress, source=dataset.source)
        logprob_sum = store.stat("logprob_sum")
        predictors = {PROBE: scores, "response length": store.stat("response_tokens_count").astype(np.float64),
                      "mean log-prob": store.stat("logprob_mean").astype(np.float64)}
        if job.reference:
            predictors[f"{IMPLICIT_REWARD} ({job.normalization})"] = _implicit(job, probe, dataset, loaded, store, out, progress)
        elif job.normalization == "none":
            predictors[f"{IMPLICIT_REWARD} (none)"] = implicit_reward(logprob_sum, None, normalization="none")
        excluded = excluded_groups(probe)
        keep = np.array([g not in excluded for g in store.groups])
        if not keep.any():
            raise UserError("every prompt in this data was used to train or validate the probe; score it on other prompts")
        result = ScoreResult(data=dataset.source, examples=int(keep.sum()), excluded_prompts=len(excluded & set(store.groups)),
                             probe={k: v for k, v in probe.info.items() if not k.endswith("_groups")})
        result.pair_accuracy = pair_accuracy(store, predictors, keep, job.n_boot, job.seed)
        if not result.pair_accuracy:
            result.transfer = transfer(store, predictors, keep, job.n_boot, job.seed)
            result.best_of_n = best_of_n(store, predictors, keep, job.n_boot, job.seed)
        frame = pd.DataFrame({"id": store.ids, "group": store.groups, "rating": store.ratings, "counted": keep, **predictors})
        write_csv(out / "scores.csv", frame)
        write_json(out / RESULT_FILE, result)
        write_run_json(out, "score", job, {})
    _add_to_run(out, result)
    return result


def _implicit(job: ScoreJob, probe: Probe, dataset, loaded, store, out: Path, progress: bool) -> np.ndarray:
    """DPO's implicit reward: the policy's and the reference's summed log-probabilities, each under its own tokenizer."""
    from latent_reward.activations.extract import extract

    reference = ModelSpec(name=job.reference, dtype=loaded.info.dtype, device=job.device, device_map=job.device_map,
                          fallback_template=loaded.info.chat_template == "fallback").load()
    config = ExtractConfig(positions=("eot",), layers=(0,), max_tokens=probe.info.get("max_tokens") or 1024, logprobs=True)
    reference_store = extract(reference, dataset.examples, out / "store-reference", config, progress=progress).store
    counts = np.stack([store.stat("response_tokens_count"), reference_store.stat("response_tokens_count")]).astype(np.float64)
    return implicit_reward(store.stat("logprob_sum"), reference_store.stat("logprob_sum"), counts, job.normalization)


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
