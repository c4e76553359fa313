"""Load a chat model and its tokenizer: bundled offline models, Hub ids, or local folders."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from latent_reward.errors import UserError
from latent_reward.models.bundled import BUNDLED, gguf_path, sha256_file
from latent_reward.models.chat import FALLBACK_CHAT_TEMPLATE
from latent_reward.paths import cache_dir

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "bundled", "hub" or "local"
    identity: str  # GGUF SHA-256, Hub commit or local path: what the store fingerprint uses
    architecture: str
    n_layers: int
    d_model: int
    vocab_size: int
    chat_template: str  # "model" or "fallback"
    dtype: str
    random_init_seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    model: Any  # a transformers *ForCausalLM
    tokenizer: Any
    info: ModelInfo


def load_model(
    name_or_path: str,
    device: str | None = None,
    dtype: str = "float32",
    device_map: str | None = None,
    allow_fallback_template: bool = False,
    random_init_seed: int | None = None,
    revision: str | None = None,
) -> LoadedModel:
    """Load a model by bundled name, Hub id or local folder.

    `random_init_seed` gives a randomly initialised copy of the same architecture (a control).
    A model with no chat template gets the documented fallback format only when
    `allow_fallback_template` is set (bundled base models set it themselves).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if name_or_path in BUNDLED:
        folder, identity, source = _bundled_folder(name_or_path), None, "bundled"
        identity = (folder / "SOURCE_SHA256").read_text().strip()
        allow_fallback_template = allow_fallback_template or not BUNDLED[name_or_path].has_chat_template
        load_from, extra = str(folder), {}
    else:
        source = "local" if Path(name_or_path).exists() else "hub"
        load_from, extra = name_or_path, ({"revision": revision} if revision else {})
        identity = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(load_from, **extra)
        config = _config(load_from, extra)
        if random_init_seed is not None:
            torch.manual_seed(random_init_seed)
            model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
        else:
            model = AutoModelForCausalLM.from_pretrained(
                load_from, dtype=DTYPES[dtype], device_map=device_map, **extra
            )
    except (OSError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"cannot load model {name_or_path!r}: {message}") from None
    if device_map is None and device is not None:
        model.to(device)
    model.eval()
    template = "model"
    if not tokenizer.chat_template:
        if not allow_fallback_template:
            raise UserError(
                f"model {name_or_path!r} has no chat template; pass --fallback-template to use the "
                "documented plain 'User:/Assistant:' format"
            )
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        template = "fallback"
    if identity is None:
        identity = getattr(config, "_commit_hash", None) or str(Path(name_or_path).resolve() if source == "local" else name_or_path)
    text_config = config.get_text_config()
    info = ModelInfo(
        name=name_or_path,
        source=source,
        identity=identity,
        architecture=type(model).__name__,
        n_layers=int(text_config.num_hidden_layers),
        d_model=int(text_config.hidden_size),
        vocab_size=int(text_config.vocab_size),
        chat_template=template,
        dtype=dtype,
        random_init_seed=random_init_seed,
    )
    return LoadedModel(model, tokenizer, info)


def _config(load_from: str, extra: dict[str, Any]):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(load_from, **extra)


def _bundled_folder(name: str) -> Path:
    """A float32 safetensors copy of the bundled GGUF, made on first use.

    Loading a GGUF dequantizes every tensor and parses its header (about 16 s for SmolLM2),
    and transformers refuses save_pretrained on a GGUF-loaded model, so the weights are written
    with safetensors directly; later loads read this folder in about a second.
    """
    gguf = gguf_path(name)
    digest = sha256_file(gguf)
    folder = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if (folder / "SOURCE_SHA256").exists():
        return folder
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a float32 safetensors cache (first use only)", gguf.name)
    staging = folder.with_name(folder.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    save_model(model, str(staging / "model.safetensors"))
    model.config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "SOURCE_SHA256").write_text(digest + "\n")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    staging.rename(folder)
    return folder
