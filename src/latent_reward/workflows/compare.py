"""`latent-reward compare`: runs side by side, from their saved results."""

from __future__ import annotations

from pathlib import Path

from latent_reward.experiments.compare import CompareResult, compare
from latent_reward.io import prepare_output_folder, write_json
from latent_reward.report.html import write_compare


def run_compare(runs: list[Path], out: Path, n_boot: int = 1000, seed: int = 0) -> tuple[CompareResult, Path]:
    result = compare(runs, n_boot, seed)
    out = prepare_output_folder(out)
    write_json(out / "compare.json", result)
    return result, write_compare(result, out)
