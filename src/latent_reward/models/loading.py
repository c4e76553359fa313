"""Load a chat model and its tokenizer: bundled offline models, Hub ids, or local folders."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from latent_reward.config import DEFAULT_DTYPE
from latent_reward.errors import UserError
from latent_reward.models.architecture import decoder_layers
from latent_reward.models.bundled import BUNDLED, cache_lock, gguf_path, sha256_file
from latent_reward.models.chat import FALLBACK_CHAT_TEMPLATE
from latent_reward.models.devices import AUTO_DTYPE, distributed_state, resolve_device, resolve_dtype
from latent_reward.paths import cache_dir

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: its source, identity and shape (saved with every store and run)."""

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
    # Known post-training data, as "dataset:split" (e.g. "ultrafeedback_binarized:train"); empty when unknown.
    post_training: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


@dataclass
class LoadedModel:
    """A loaded model in eval mode, its tokenizer (with a chat template) and its ModelInfo."""

    model: Any  # a transformers *ForCausalLM
    tokenizer: Any
    info: ModelInfo


@dataclass(frozen=True)
class _Source:
    load_from: str
    kind: str  # bundled / local / hub
    identity: str | None
    extra: dict[str, Any]
    fallback_template: bool
    post_training: tuple[str, ...] = ()


def load_model(
    name_or_path: str,
    device: str = "cpu",
    dtype: str = DEFAULT_DTYPE,
    device_map: str | None = None,
    allow_fallback_template: bool = False,
    random_init_seed: int | None = None,
    revision: str | None = None,
) -> LoadedModel:
    """Load a model by bundled name, Hub id or local folder.

    `device` is a --device name ("auto": see models.devices); a `device_map` (e.g. "auto") spreads the layers
    over several devices instead. `random_init_seed` gives a randomly initialised copy of the same architecture
    (a control; built on `device`, a device map does not apply to it).
    A model with no chat template gets the documented fallback format only when
    `allow_fallback_template` is set (bundled base models set it themselves).
    """
    if dtype not in DTYPES and dtype != AUTO_DTYPE:
        raise UserError(f"unknown dtype {dtype!r}; choose auto or one of {', '.join(DTYPES)}")
    device = resolve_device(device)  # before loading: under accelerate launch this makes the process state
    dtype = resolve_dtype(dtype, device)
    if device_map is not None and distributed_state() is not None:
        raise UserError(
            "--device-map spreads one model over every GPU, and accelerate launch runs one model per process: "
            "use one or the other"
        )
    source = _resolve(name_or_path, revision, allow_fallback_template)
    tokenizer, config, model = _from_pretrained(name_or_path, source, dtype, device_map, random_init_seed)
    if device_map is None:
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as error:
            raise UserError(f"cannot move the model to {device!r}: {str(error).splitlines()[0]}") from None
    model.eval()
    template = "model"
    if not tokenizer.chat_template:
        if not source.fallback_template:
            raise UserError(
                f"model {name_or_path!r} has no chat template; pass --fallback-template to use the "
                "documented plain 'User:/Assistant:' format"
            )
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        template = "fallback"
    identity = (
        source.identity
        or getattr(config, "_commit_hash", None)
        or (str(Path(name_or_path).resolve()) if source.kind == "local" else name_or_path)
    )
    text_config = config.get_text_config()
    info = ModelInfo(
        name=name_or_path,
        source=source.kind,
        identity=identity,
        architecture=type(model).__name__,
        n_layers=int(text_config.num_hidden_layers),
        d_model=int(text_config.hidden_size),
        vocab_size=int(text_config.vocab_size),
        chat_template=template,
        dtype=dtype,
        random_init_seed=random_init_seed,
        post_training=() if random_init_seed is not None else source.post_training,
    )
    return LoadedModel(model, tokenizer, info)


def _resolve(name_or_path: str, revision: str | None, allow_fallback_template: bool) -> _Source:
    if name_or_path in BUNDLED:
        bundled = BUNDLED[name_or_path]
        folder = bundled_folder(name_or_path)
        return _Source(
            str(folder),
            "bundled",
            (folder / "SOURCE_SHA256").read_text().strip(),
            {},
            allow_fallback_template or not bundled.has_chat_template,
            bundled.post_training,
        )
    if Path(name_or_path).exists():
        if not Path(name_or_path).is_dir():
            raise UserError(f"model {name_or_path!r} is a file; give a bundled name, a Hub id or a model folder")
        if (Path(name_or_path) / "trainer").exists() and not (Path(name_or_path) / "latent_reward.json").exists():
            raise UserError(
                f"{name_or_path} is an unfinished training run; run the same train command again to finish it"
            )
        return _Source(
            name_or_path, "local", None, {}, allow_fallback_template, saved_post_training(Path(name_or_path))
        )
    from latent_reward.hub import offline_if_unreachable

    offline_if_unreachable()
    return _Source(name_or_path, "hub", None, {"revision": revision} if revision else {}, allow_fallback_template)


def training_record(folder: Path) -> dict:
    """What a checkpoint trained by latent-reward records in latent_reward.json (method, base_model, steps, data...);
    empty for any other folder."""
    path = folder / "latent_reward.json"
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def saved_post_training(folder: Path) -> tuple[str, ...]:
    """A checkpoint trained by latent-reward records its training data in latent_reward.json."""
    return tuple(training_record(folder).get("post_training", ()))


def _from_pretrained(name: str, source: _Source, dtype: str, device_map: str | None, random_init_seed: int | None):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.load_from, **source.extra)
        config = AutoConfig.from_pretrained(source.load_from, **source.extra)
        if random_init_seed is not None:
            torch.manual_seed(random_init_seed)
            model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
            if device_map is not None:
                model = _spread(model, device_map)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                source.load_from, dtype=DTYPES[dtype], device_map=device_map, **source.extra
            )
    except (OSError, ValueError, KeyError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if source.kind == "hub":
            from latent_reward.hub import offline_if_unreachable

            if offline_if_unreachable():
                message = "the Hugging Face Hub cannot be reached and the model is not in the local cache"
        raise UserError(f"cannot load model {name!r}: {message}") from None
    return tokenizer, config, model


def _spread(model, device_map: str):
    """A model built in memory (random weights) spread over the devices as `from_pretrained(device_map=...)` spreads
    loaded weights: accelerate's placement ("auto"/"balanced" balance memory over the GPUs, "sequential" fills them in
    order, then the CPU) and its dispatch hooks; any other value is one device for the whole model."""
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        return dispatch_model(model, {"": device_map})
    blocks = model._no_split_modules or [type(block).__name__ for block in decoder_layers(model)[:1]]
    memory = (
        None
        if device_map == "sequential"
        else get_balanced_memory(model, no_split_module_classes=blocks, low_zero=device_map == "balanced_low_0")
    )
    placement = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=blocks)
    if "disk" in placement.values():
        raise UserError(
            "the random-init copy does not fit in GPU and CPU memory together; read fewer layers (--random-init-depth) "
            "or skip it (--no-random-init-control)"
        )
    return dispatch_model(model, placement)


def bundled_folder(name: str) -> Path:
    """A plain float32 safetensors checkpoint of the bundled GGUF, made on first use.

    Loading a GGUF dequantizes every tensor and parses its header (about 16 s for SmolLM2),
    and transformers refuses save_pretrained on a GGUF-loaded model, so the weights are written
    with safetensors directly; later loads read this folder in about a second. The config is saved
    without the GGUF quantization entry, so the folder is an ordinary checkpoint that trainers accept.
    """
    gguf = gguf_path(name)
    digest = sha256_file(gguf)
    folder = cache_dir() / "models" / f"{name}-{digest[:12]}"
    if not (folder / "SOURCE_SHA256").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with cache_lock(folder):  # another process converting it: wait, then read its folder
            if not (folder / "SOURCE_SHA256").exists():
                _convert(gguf, folder, digest)
    _plain_config(folder)
    return folder


def _convert(gguf: Path, folder: Path, digest: str) -> None:
    """Write the GGUF's dequantized weights, config and tokenizer to `folder` (through a staging folder)."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from latent_reward.extras import require

    require("gguf")  # transformers reads GGUF files with it
    log.info("converting %s to a float32 safetensors cache (first use only)", gguf.name)
    staging = folder.with_name(folder.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    save_model(model, str(staging / "model.safetensors"))
    model.config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    _plain_config(staging, type(model).__name__)
    (staging / "SOURCE_SHA256").write_text(digest + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def _plain_config(folder: Path, architecture: str | None = None) -> None:
    """Drop the GGUF quantization entry from config.json and name the architecture (idempotent)."""
    from latent_reward.io import atomic_write_text

    path = folder / "config.json"
    config = json.loads(path.read_text())
    if "quantization_config" not in config and config.get("architectures"):
        return
    config.pop("quantization_config", None)
    if not config.get("architectures"):
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        config["architectures"] = [architecture or MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config["model_type"]]]
    atomic_write_text(path, json.dumps(config, indent=2))
