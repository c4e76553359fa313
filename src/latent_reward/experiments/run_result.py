"""Everything `latent-reward run` found, as one typed result: what results.json holds, what the report
renders and what `compare` reads back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from latent_reward.activations.store import ActivationStore, ModelRecord, StoreStats
from latent_reward.data.summary import DataSummary
from latent_reward.errors import UserError
from latent_reward.evaluation.results import Result
from latent_reward.experiments.prompt_only import PromptOnlyResult
from latent_reward.experiments.readout import ReadoutResult
from latent_reward.experiments.reward_model import ScoreResult
from latent_reward.experiments.trajectory import TrajectoryResult
from latent_reward.io import read_json, write_json

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = (
    "predictions.csv"  # every example's cross-fitted predictions (probe, baselines), for paired comparisons
)
WITHIN_COLUMN = "within_probe"  # predictions.csv: the within-prompt probe's (the within-prompt headline's) predictions


class Answer(Result):
    """A question the report answers, and the answer: its first sentence leads (with the key number), the rest is the
    full statistics, which the page folds below it."""

    question: str
    answer: str

    @property
    def lead(self) -> str:
        return self.answer[: _first_sentence_end(self.answer)].strip()

    @property
    def details(self) -> str:
        return self.answer[_first_sentence_end(self.answer) :].strip()


def _first_sentence_end(text: str) -> int:
    """Where the first sentence ends: after the first '.', '!', '?' or ':' outside brackets that a space and a capital,
    a bracket or a digit follow (decimals such as 0.571 and abbreviations inside brackets do not end it)."""
    depth = 0
    for index, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        if depth == 0 and char in ".!?" and re.match(r"\s+[A-Z(\d]", text[index + 1 :]):
            return index + 1
    return len(text)


class StoreSummary(Result):
    """The activation store a run read: its folder, its fingerprint and extraction's counts."""

    folder: str | None = None
    fingerprint: dict[str, Any] = {}  # the store's (`Manifest.fingerprint`): what a rerun must match
    stats: StoreStats | None = None

    @classmethod
    def of(cls, store: ActivationStore) -> StoreSummary:
        """The summary of an opened store."""
        return cls(folder=str(store.folder), fingerprint=store.manifest.fingerprint, stats=store.manifest.stats)


class RunResult(Result):
    format_version: int = 2
    command: str = "run"
    model: ModelRecord
    data: DataSummary
    readout: ReadoutResult
    prompt_only: PromptOnlyResult | None = None
    trajectory: TrajectoryResult | None = None
    scores: dict[str, ScoreResult] = {}  # `score` runs saved inside the run folder, by folder name
    answers: list[Answer] = []
    store: StoreSummary = StoreSummary()
    config: dict[str, JsonValue] = {}  # the command's whole configuration (`command`'s job, defined in workflows/)
    timings: dict[str, float] = {}

    def save(self, folder: str | Path) -> Path:
        return write_json(Path(folder) / RESULTS_FILE, self)

    @classmethod
    def load(cls, folder: str | Path) -> RunResult:
        """From a report folder or a run folder (whose report/ holds results.json)."""
        folder = Path(folder)
        for candidate in (folder / RESULTS_FILE, folder / "report" / RESULTS_FILE):
            if candidate.exists():
                payload = read_json(candidate, "results file")
                if not isinstance(payload, dict) or payload.get("format_version") != 2:
                    raise UserError(
                        f"{candidate} was written by an older latent-reward; run the command again to update it"
                    )
                try:
                    return cls.model_validate(payload)
                except ValueError as error:
                    raise UserError(f"{candidate} is not a valid results file ({str(error).splitlines()[0]})") from None
        raise UserError(f"{folder} holds no {RESULTS_FILE}; give folders written by `latent-reward run` or `sweep`")
