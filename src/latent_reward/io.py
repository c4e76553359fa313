"""Files on disk: atomic writes, JSON of results, version info, and one-writer-at-a-time locks."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from latent_reward.errors import UserError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in the same folder (same suffix) to write to; renamed over `path` only when the block
    succeeds, so a killed or failed writer never leaves half a file and never damages the old one."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` as UTF-8, atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(value: Any) -> Any:
    """Plain JSON types from numpy scalars, tuples, paths and pydantic models; NaN and inf become null."""
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        value = value.tolist()
        if isinstance(value, list):
            return jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, payload: Any) -> Path:
    """Write `payload` (made JSON-ready by `jsonable`) to `path` as indented JSON, atomically; returns the path."""
    return atomic_write_text(path, json.dumps(jsonable(payload), indent=1, ensure_ascii=False))


def write_csv(path: str | Path, frame) -> Path:
    """A pandas DataFrame as CSV, written atomically."""
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)
    return Path(path)


def read_json(path: str | Path, what: str = "file") -> Any:
    """JSON from `path`, or a one-line UserError naming the file when it is missing or damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path} is not a valid {what} ({type(error).__name__}: {error}); delete it or restore it"
        ) from None


def check_output_folder(folder: str | Path) -> Path:
    """`folder` as a Path; a clear error when the path is an existing file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is an existing file, not a folder; choose a folder path")
    return folder


def prepare_output_folder(folder: str | Path) -> Path:
    """Create `folder` (and parents); a clear error when the path is a file or cannot be created."""
    folder = check_output_folder(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the output folder {folder}: {error.strerror or error}") from None
    return folder


@contextlib.contextmanager
def exclusive(folder: str | Path, what: str = "folder") -> Iterator[None]:
    """Hold the folder's lock file while writing into it: a second writer is refused with one line.

    filelock's locks are advisory OS locks, released by the kernel when the holder dies (even by
    SIGKILL), so a killed run never leaves a stale lock behind.
    """
    from filelock import FileLock, Timeout

    folder = prepare_output_folder(folder)
    lock = FileLock(str(folder / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"another process is writing the {what} in {folder}; wait for it to finish (or stop it)"
        ) from None
    try:
        yield
    finally:
        lock.release()


def versions() -> dict[str, str]:
    """Versions of the packages that change the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("latent-reward", "torch", "transformers", "numpy", "scipy", "scikit-learn"):
        try:
            found[package.replace("-", "_")] = version(package)
        except PackageNotFoundError:
            continue
    return found


def source_revision() -> dict[str, str | bool] | None:
    """The git commit of the checkout this package runs from, and whether its tracked files were modified; None when it
    runs from an installed copy (its files are tracked by no git work tree: a copy installed into a virtual environment
    inside some repository is not that repository's code) or git is missing."""
    import subprocess

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True, timeout=10).stdout

    try:
        git("ls-files", "--error-unmatch", Path(__file__).name)  # fails unless this very file is tracked here
        commit = git("rev-parse", "HEAD").strip()
        modified = bool(git("status", "--porcelain", "--untracked-files=no", "--", str(here)).strip())
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "modified": modified}


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True):
    """A tqdm bar on stderr, shown only when stderr is a terminal (logs and captured output stay clean)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, dynamic_ncols=True)
