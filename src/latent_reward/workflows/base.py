"""The one job skeleton every workflow runs on: the output folder prepared and held (`io.exclusive`), the job timed,
its typed result written (results.json, or the command's own file name) with run.json beside it, and one return
shape, `Outcome[R]`.

    with start("steer", job, job.out, "steer job") as folder:
        result = ...                                     # load what the experiment needs, call it
        write_csv(folder.path / "steer.csv", frame)      # the command's other files
        return folder.finish(result, report=write_steer_report(result, folder.path))
"""

from __future__ import annotations

import contextlib
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from latent_reward.io import (
    check_output_folder,
    exclusive,
    jsonable,
    prepare_output_folder,
    source_revision,
    versions,
    write_json,
)

R = TypeVar("R")
RESULTS_FILE = "results.json"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What every workflow returns: its typed result, the folder it wrote (None for a command that writes none), the
    named files and folders in it (the HTML page as "report", saved probes, data files), and its timings in seconds."""

    result: R
    folder: Path | None
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def report(self) -> Path | None:
        """The HTML page the command wrote, if any."""
        return self.files.get("report")


def write_run_json(
    folder: Path,
    command: str,
    config: Any,
    timings: dict[str, float],
    extra: dict[str, Any] | None = None,
    source: dict[str, str | bool] | None = None,
) -> Path:
    """run.json: the command, its whole configuration, versions, the source's git commit when it runs from a checkout
    (`source`, read when the job started) and timings: enough to reproduce the folder."""
    payload = {
        "command": command,
        "argv": sys.argv,
        "config": jsonable(config),
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "source": source,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **(extra or {}),
    }
    return write_json(Path(folder) / RUN_FILE, payload)


class JobFolder:
    """One job's output folder while the job holds it: where to write, the clock, and the timings so far."""

    def __init__(self, command: str, config: Any, path: Path | None):
        self.command, self.config, self.folder = command, config, path
        self.started = time.perf_counter()
        self.source = source_revision()  # at the start: the code a long job runs is the code it imported then
        self.timings: dict[str, float] = {}

    @property
    def path(self) -> Path:
        """The folder to write into (a job started with no `out` has none)."""
        if self.folder is None:
            raise TypeError(f"the {self.command} job writes no folder")
        return self.folder

    def elapsed(self) -> float:
        """Seconds since the job started."""
        return time.perf_counter() - self.started

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Adds the block's wall time to `timings[name]`."""
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - tick

    def finish(
        self,
        result: R,
        results: str | None = RESULTS_FILE,
        files: Mapping[str, Path | None] | None = None,
        report: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome[R]:
        """Write `result` to `results` (a path inside the folder; None: the command writes no result file) and run.json
        with the timings (the total included) and `extra`; returns the Outcome. Files given as None are left out."""
        self.timings.setdefault("total", self.elapsed())
        named = {name: path for name, path in {"report": report, **(files or {})}.items() if path is not None}
        if self.folder is not None:
            if results is not None:
                (self.folder / results).parent.mkdir(parents=True, exist_ok=True)
                named["results"] = write_json(self.folder / results, result)
            named["run"] = write_run_json(self.folder, self.command, self.config, self.timings, extra, self.source)
        return Outcome(result, self.folder, named, dict(self.timings))


@contextlib.contextmanager
def start(command: str, config: Any, out: Path | None, what: str | None = None) -> Iterator[JobFolder]:
    """Run a job: `out` created (a clear error when it is a file) and held with `io.exclusive` while the block runs;
    `what` names the job in the refusal a second writer gets. `what` None: a job whose own writer creates and holds
    the folder (an extraction, the store's), so `out` is only checked here. `out` None: a command that writes no
    folder (only its timings are kept)."""
    if out is None:
        yield JobFolder(command, config, None)
    elif what is None:
        yield JobFolder(command, config, check_output_folder(out))
    else:
        with exclusive(prepare_output_folder(out), what):
            yield JobFolder(command, config, Path(out))
