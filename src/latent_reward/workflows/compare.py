"""`latent-reward compare`: runs side by side, from their saved results."""

from __future__ import annotations

from pathlib import Path

from latent_reward.config import Spec
from latent_reward.experiments.compare import CompareResult, compare
from latent_reward.report.html import write_compare
from latent_reward.workflows.base import Outcome, start

RESULT_FILE = "compare.json"


class CompareJob(Spec):
    runs: tuple[Path, ...]  # folders written by `run` or `sweep` (or their report folders)
    out: Path
    n_boot: int = 1000
    seed: int = 0


def run_compare(job: CompareJob) -> Outcome[CompareResult]:
    with start("compare", job, job.out, "comparison") as folder:
        result = compare(list(job.runs), job.n_boot, job.seed)
        return folder.finish(result, RESULT_FILE, report=write_compare(result, folder.path))
