"""The activation store: safetensors shards + examples.jsonl + manifest.json in one folder.

This module is the one owner of the format: the manifest (`Manifest`, with the model's `ModelRecord`) and its
fingerprint, the example records, the shards and their integrity records. Extraction writes through it; everything else
reads through `ActivationStore`. `ActivationStore.from_arrays` makes a store from a user's own arrays (in a
folder, or in memory), and `to_dataset` / `to_parquet` export one, rows in example order.

Layout
    manifest.json      fingerprint (model, data, positions, layers, max_tokens), status, stats,
                       and for a complete store each shard's size and SHA-256
    examples.jsonl     one line per example, in dataset order: id, group, rating, aspects, meta, messages
    shards/shard-NNNNN.safetensors
        <position>               float16 [n, n_layers_stored, d_model]
        response_tokens          float16 [n_tokens, n_token_layers, d_model]   (optional)
        response_tokens_offsets  int64   [n + 1]                                (optional)
        example_index            int64   [n]  row of each example in examples.jsonl
        n_tokens, response_tokens_count, truncated, logprob_mean, logprob_sum   per-example stats (the log-probabilities
                                 cover the response's tokens and its end-of-turn token)
    shards/shard-NNNNN.json      the shard's size and SHA-256, written right after the shard
    .lock                        held by the process writing the store
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.io import atomic_path, atomic_write_bytes, atomic_write_text, read_json, versions, write_json
from latent_reward.positions import POSITIONS, parse_positions

if TYPE_CHECKING:
    import datasets

MANIFEST = "manifest.json"
EXAMPLES = "examples.jsonl"
SHARDS = "shards"
FORMAT = "latent-reward activation store"
FORMAT_VERSION = 2
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "BOOL": np.bool_, "I32": np.int32}


class ModelRecord(BaseModel):
    """The model whose states a store holds: its `ModelInfo` as saved (a store made from arrays records its name and
    shape only)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    n_layers: int  # the model's number of blocks (the last residual index)
    d_model: int | None = None
    source: str | None = None  # "bundled", "hub" or "local"
    identity: str | None = None  # GGUF SHA-256, Hub commit or local path
    architecture: str | None = None
    vocab_size: int | None = None
    chat_template: str | None = None  # "model" or "fallback"
    dtype: str | None = None
    random_init_seed: int | None = None
    post_training: tuple[str, ...] = ()  # known post-training data, as "dataset:split"


class ShardRecord(BaseModel):
    """A shard's integrity record: its size and SHA-256 (and, in the manifest, its file name)."""

    file: str | None = None
    bytes: int
    sha256: str
    examples: int | None = None  # rows in the shard


class StoreStats(BaseModel):
    """What extraction counted over the whole store."""

    tokens: int
    tokens_computed: int
    tokens_saved_by_prompt_sharing: int
    padding_fraction: float
    prompt_units: int
    truncated: int


class Manifest(BaseModel):
    """manifest.json: what a store holds, how it was made (the fingerprint a resumed run must match) and, once it is
    complete, its shards' integrity records and extraction's counts."""

    model_config = ConfigDict(extra="ignore")

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    status: Literal["incomplete", "complete"] = "incomplete"
    fingerprint: dict[str, Any] = {}  # the request (model, data, every extraction option) and the model's identity
    data_source: str | None = None
    model: ModelRecord
    positions: list[str]
    layers: list[int]
    token_layers: list[int] = []
    residual_convention: str = ""
    dtype: str = "float16"
    versions: dict[str, str] = {}
    n_examples: int | None = None
    n_shards: int = 0
    shards: list[ShardRecord] = []
    stats: StoreStats | None = None
    timings: dict[str, float | int] = {}

    @property
    def max_tokens(self) -> int | None:
        """The token budget the store was extracted with (None for a store made from arrays)."""
        return self.fingerprint.get("max_tokens")

    def differences(self, wanted: dict[str, Any]) -> list[str]:
        """Keys of `wanted` whose value the stored fingerprint does not have."""
        return [key for key, value in wanted.items() if self.fingerprint.get(key) != value]


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of the store in `folder`, or a one-line UserError when it is damaged."""
    path = Path(folder) / MANIFEST
    try:
        return Manifest.model_validate(read_json(path, "store manifest"))
    except ValidationError as error:
        raise UserError(f"{path} is not a valid store manifest ({str(error).splitlines()[0]})") from None


def shard_path(folder: Path, index: int) -> Path:
    """Path of shard `index`'s safetensors file inside the store `folder`."""
    return Path(folder) / SHARDS / f"shard-{index:05d}.safetensors"


def _record_path(shard: Path) -> Path:
    return shard.with_suffix(".json")


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 hex digest of `data`."""
    return hashlib.sha256(data).hexdigest()


def write_shard(folder: Path, index: int, tensors: dict[str, np.ndarray]) -> None:
    """Write one shard atomically, then its integrity record (size and SHA-256)."""
    from safetensors.numpy import save

    data = save({name: np.ascontiguousarray(values) for name, values in tensors.items()})
    path = shard_path(folder, index)
    atomic_write_bytes(path, data)
    write_json(
        _record_path(path),
        {"bytes": len(data), "sha256": sha256_bytes(data), "examples": int(len(tensors["example_index"]))},
    )


def shard_problem(folder: Path, index: int, record: ShardRecord | None = None, checksum: bool = True) -> str | None:
    """Why shard `index` cannot be used ('missing', 'truncated: ...', 'checksum mismatch'), or None if it is intact.

    `record` is the manifest's entry for the shard (else its own integrity file is used).
    """
    path = shard_path(folder, index)
    if not path.exists():
        return "missing"
    if record is None:
        record_file = _record_path(path)
        if not record_file.exists():
            return "no integrity record (written by an interrupted run)"
        try:
            record = ShardRecord.model_validate_json(record_file.read_text())
        except (OSError, ValidationError):
            return "damaged integrity record"
    size = path.stat().st_size
    if size != record.bytes:
        return f"{size:,} bytes on disk, {record.bytes:,} expected"
    if checksum and sha256_bytes(path.read_bytes()) != record.sha256:
        return "checksum mismatch"
    return None


def shard_records(folder: Path, n_shards: int) -> list[ShardRecord]:
    """The integrity records of shards 0..n-1, for the finished manifest."""
    return [
        ShardRecord.model_validate(
            {"file": shard_path(folder, i).name, **read_json(_record_path(shard_path(folder, i)), "shard record")}
        )
        for i in range(n_shards)
    ]


def matching_complete_store(folder: Path, wanted: dict[str, Any]) -> bool:
    """Whether `folder` holds a complete store whose fingerprint includes `wanted`."""
    if not (Path(folder) / MANIFEST).exists():
        return False
    manifest = read_manifest(folder)
    return manifest.status == "complete" and not manifest.differences(wanted)


def new_manifest(
    fingerprint: dict[str, Any],
    model: ModelRecord | dict[str, Any],
    positions,
    layers,
    token_layers,
    n_layers: int,
    source: str | None,
    versions: dict[str, str],
) -> Manifest:
    """The manifest of a store about to be written (status "incomplete"; shards and stats are added when it is
    finished)."""
    return Manifest(
        fingerprint=fingerprint,
        data_source=source,
        model=ModelRecord.model_validate(model),
        positions=list(positions),
        layers=list(layers),
        token_layers=list(token_layers),
        versions=versions,
        residual_convention=(
            "index 0 = input of the first block (embeddings); index i = raw output of block i; "
            f"index {n_layers} = raw output of the last block, BEFORE the final norm "
            "(transformers' last hidden_states entry has the norm applied)"
        ),
    )


def write_examples(folder: Path, examples: list[Example]) -> None:
    """Write the examples to the store's examples.jsonl, one record per line, atomically."""
    atomic_write_text(
        Path(folder) / EXAMPLES, "".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in examples)
    )


def read_safetensors_memmap(path: Path) -> dict[str, np.ndarray]:
    """Memory-mapped numpy views of every tensor in a safetensors file.

    Hand-written because safetensors' numpy API copies tensors into memory; the format is a
    little-endian u64 header length, a JSON header with dtype/shape/offsets, then raw data.
    """
    with path.open("rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_length))
    base = 8 + header_length
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        dtype, shape = _DTYPES[entry["dtype"]], tuple(entry["shape"])
        if end == start:
            arrays[name] = np.zeros(shape, dtype=dtype)
        else:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=base + start, shape=shape)
    return arrays


def _release(values: np.ndarray) -> None:
    """Drop a memory map's pages from this process once read (the file stays in the page cache): reading a large store
    layer by layer then holds one copy of what was asked for, not the mapped file too."""
    mapped = getattr(values, "_mmap", None)
    if mapped is not None:
        mapped.madvise(mmap.MADV_DONTNEED)


def _text_free_example(index: int, group: str, rating: float) -> Example:
    """An example that carries a row's id, group and rating but no text (a store made from arrays alone)."""
    return Example(
        id=f"arrays:{index}",
        group=str(group),
        rating=float(rating),
        messages=[{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
    )


def _float16(name: str, values: Any, n: int, layers: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 3 or array.shape[0] != n or (layers is not None and array.shape[1] != layers):
        raise UserError(
            f"states[{name!r}] must be [n examples ({n}), n layers ({layers}), d_model], not {list(array.shape)}"
        )
    with np.errstate(over="ignore"):  # checked just below
        stored = array.astype(np.float16)
    if np.isfinite(array).all() and not np.isfinite(stored).all():
        raise UserError(f"states[{name!r}] hold values beyond float16's range (+-65504), which the store keeps")
    return stored


class ActivationStore:
    """Read side of a finished store. Open with `ActivationStore.open(folder)`; make one from arrays with
    `from_arrays`."""

    def __init__(
        self,
        folder: Path | None,
        manifest: Manifest,
        examples: list[Example],
        shards: list[dict[str, np.ndarray]] | None = None,
    ):
        self.folder = folder  # None for a store held in memory
        self.manifest = manifest
        self._examples = examples
        if shards is None:
            if folder is None:
                raise ValueError("a store held in memory needs its shards")
            shards = [read_safetensors_memmap(shard_path(folder, i)) for i in range(manifest.n_shards)]
        self._shards = shards
        self._row_order = [shard["example_index"] for shard in self._shards]

    @classmethod
    def from_arrays(
        cls,
        states: Mapping[str, Any],
        ratings: Sequence[float] | np.ndarray | None = None,
        groups: Sequence[str] | np.ndarray | None = None,
        *,
        examples: Sequence[Example] | None = None,
        layers: Sequence[int] | None = None,
        n_layers: int | None = None,
        model: str = "arrays",
        stats: Mapping[str, np.ndarray] | None = None,
        folder: str | Path | None = None,
    ) -> ActivationStore:
        """A store from states already in memory (your TransformerLens or nnsight cache, vLLM outputs, `lr.capture`).

        states: {position: [n, len(layers), d_model]}, position names from the positions table (user_end,
        assistant_start, response_last, eot, response_mean). Each row's rating and group (prompt id: every split is by
        group) come from `ratings` and `groups`, or from `examples` (which also carry the text that the text
        baselines read; without it they do not apply). `layers`: the residual indices of the columns (default
        0..L-1); `n_layers`: the model's number of blocks (default the largest layer); `stats`: per-example
        statistics [n] (e.g. logprob_mean, response_tokens_count). Written to `folder` through this module's writer,
        or held in memory when `folder` is None. States are kept as float16, as extraction keeps them.
        """
        if examples is None:
            if ratings is None or groups is None:
                raise UserError("give each row's rating and group (ratings= and groups=), or examples=")
            if len(ratings) != len(groups):
                raise UserError(f"{len(ratings)} ratings but {len(groups)} groups")
            examples = [_text_free_example(i, g, r) for i, (g, r) in enumerate(zip(groups, ratings))]
        elif ratings is not None or groups is not None:
            raise UserError("give either examples= or ratings= and groups=, not both")
        examples, n = list(examples), len(examples)
        stored = [name for name in states if name not in POSITIONS]
        if stored:
            raise UserError(f"states for {stored[0]!r}: a store holds the positions {', '.join(POSITIONS)}")
        names = parse_positions(list(states))
        width = None if layers is None else len(layers)
        tensors = {name: _float16(name, states[name], n, width) for name in names}
        if len({t.shape[1:] for t in tensors.values()}) > 1:
            raise UserError("every position's states must have the same number of layers and the same width")
        layers = list(layers) if layers is not None else list(range(next(iter(tensors.values())).shape[1]))
        for name, values in (stats or {}).items():
            tensors[name] = np.asarray(values)
            if tensors[name].shape != (n,):
                raise UserError(
                    f"stats[{name!r}] must hold one value per example ({n}), not {list(tensors[name].shape)}"
                )
        tensors["example_index"] = np.arange(n, dtype=np.int64)
        record = ModelRecord(
            name=model,
            n_layers=int(n_layers if n_layers is not None else max(layers)),
            d_model=int(next(iter(tensors.values())).shape[-1]),
        )
        manifest = new_manifest(
            {"source": "arrays", "n_examples": n}, record, names, layers, [], record.n_layers, "arrays", versions()
        )
        manifest = manifest.model_copy(update={"status": "complete", "n_examples": n, "n_shards": 1})
        if folder is None:
            return cls(None, manifest, examples, [tensors])
        folder = Path(folder)
        if (folder / MANIFEST).exists():
            raise UserError(f"{folder} already holds a store; choose another folder")
        (folder / SHARDS).mkdir(parents=True, exist_ok=True)
        write_shard(folder, 0, tensors)
        write_examples(folder, examples)
        write_json(folder / MANIFEST, manifest.model_copy(update={"shards": shard_records(folder, 1)}))
        return cls.open(folder)

    @classmethod
    def open(cls, folder: str | Path, verify: bool = False) -> ActivationStore:
        """Open a complete store. Each shard's size is checked against the manifest (cheap);
        `verify` also checks every shard's SHA-256."""
        folder = Path(folder)
        if not (folder / MANIFEST).exists():
            raise UserError(f"{folder} is not an activation store (no {MANIFEST})")
        manifest = read_manifest(folder)
        if manifest.status != "complete":
            raise UserError(f"the store in {folder} is unfinished; run the same extract command again to finish it")
        for index, record in enumerate(manifest.shards):
            problem = shard_problem(folder, index, record, checksum=verify)
            if problem:
                raise UserError(
                    f"{shard_path(folder, index)} is damaged ({problem}); run the same extract command "
                    "again to recompute it"
                )
        try:
            with (folder / EXAMPLES).open(encoding="utf-8") as handle:
                examples = [Example.from_record(json.loads(line)) for line in handle]
        except (OSError, json.JSONDecodeError, KeyError) as error:
            raise UserError(f"{folder / EXAMPLES} is damaged ({error}); run the same extract command again") from None
        return cls(folder, manifest, examples)

    # --- what the store holds -------------------------------------------------------------
    @property
    def positions(self) -> list[str]:
        """Names of the stored positions (per-token states excluded)."""
        return list(self.manifest.positions)

    @property
    def layers(self) -> list[int]:
        """Residual indices stored for every position, in column order."""
        return list(self.manifest.layers)

    @property
    def n_layers(self) -> int:
        """The model's number of blocks (the last residual index)."""
        return self.manifest.model.n_layers

    @property
    def d_model(self) -> int:
        """Width of the stored states."""
        return int(self._shards[0][self.positions[0]].shape[-1])

    def __len__(self) -> int:
        return len(self._examples)

    @property
    def examples(self) -> list[Example]:
        """The examples, in row order."""
        return self._examples

    @property
    def ids(self) -> list[str]:
        """Example ids, in row order."""
        return [e.id for e in self._examples]

    @property
    def groups(self) -> np.ndarray:
        """str [n_examples]: each example's group (prompt id)."""
        return np.array([e.group for e in self._examples])

    @property
    def ratings(self) -> np.ndarray:
        """float64 [n_examples]: each example's rating."""
        return np.array([e.rating for e in self._examples], dtype=np.float64)

    @property
    def aspects(self) -> dict[str, np.ndarray]:
        """Per-aspect ratings, float64 [n_examples] each (NaN where an example lacks the aspect)."""
        names = sorted({name for e in self._examples for name in e.aspects})
        return {n: np.array([e.aspects.get(n, np.nan) for e in self._examples], dtype=np.float64) for n in names}

    @property
    def meta(self) -> list[dict[str, Any]]:
        """Each example's meta dict, in row order."""
        return [e.meta for e in self._examples]

    def has_stat(self, name: str) -> bool:
        """Whether the shards hold the per-example statistic `name`."""
        return bool(self._shards) and name in self._shards[0]

    def stat(self, name: str) -> np.ndarray:
        """A per-example statistic saved during extraction (n_tokens, truncated, logprob_mean...): [n_examples]."""
        if not self.has_stat(name):
            raise UserError(f"the store has no per-example statistic {name!r}")
        return self._gather(name)

    @property
    def location(self) -> str | None:
        """The store folder's absolute path (None for a store held in memory)."""
        return str(self.folder.resolve()) if self.folder is not None else None

    def stat_names(self) -> list[str]:
        """The per-example statistics the shards hold (n_tokens, truncated, logprob_mean...)."""
        skip = {*self.positions, "example_index", "response_tokens", "response_tokens_offsets"}
        return [name for name in self._shards[0] if name not in skip] if self._shards else []

    # --- export -----------------------------------------------------------------------------
    def to_dataset(
        self, positions: Sequence[str] | None = None, layers: Sequence[int] | None = None
    ) -> datasets.Dataset:
        """A Hugging Face `datasets.Dataset`, one row per example in example order (the order of `examples`, whatever
        the shards' order): id, group, rating, messages, one `aspect_<name>` column per aspect, the per-example
        statistics, and one column per position holding its states, float16 [len(layers), d_model] (default: every
        position and stored layer; all of it is read into memory, so choose for a large store)."""
        import datasets

        positions = list(positions or self.positions)
        layers = list(layers or self.layers)
        columns: dict[str, Any] = {
            "id": self.ids,
            "group": [str(g) for g in self.groups],
            "rating": self.ratings,
            "messages": [e.messages for e in self._examples],
        }
        features: dict[str, Any] = {
            "id": datasets.Value("string"),
            "group": datasets.Value("string"),
            "rating": datasets.Value("float64"),
            "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        }
        for name, values in self.aspects.items():
            columns[f"aspect_{name}"], features[f"aspect_{name}"] = values, datasets.Value("float64")
        for name in self.stat_names():
            values = self.stat(name)
            columns[name], features[name] = values, datasets.Value(str(values.dtype))
        for position in positions:
            columns[position] = self.array(position, layers)
            features[position] = datasets.Array2D((len(layers), self.d_model), "float16")
        return datasets.Dataset.from_dict(columns, features=datasets.Features(features))

    def to_parquet(
        self, path: str | Path, positions: Sequence[str] | None = None, layers: Sequence[int] | None = None
    ) -> Path:
        """`to_dataset(positions, layers)` written to one Parquet file (atomically); returns its path."""
        path = Path(path)
        dataset = self.to_dataset(positions, layers)
        with atomic_path(path) as temporary:
            dataset.to_parquet(str(temporary))
        return path

    # --- states ---------------------------------------------------------------------------
    def array(self, position: str, layers: list[int] | None = None) -> np.ndarray:
        """float16 [n_examples, n_layers, d_model] at `position`, rows in example order.

        `layers` (residual indices) selects a subset; only those bytes are read from disk.
        """
        if position not in self.positions:
            raise UserError(f"the store has no position {position!r}; it has {', '.join(self.positions)}")
        columns = None if layers is None else [self._layer_column(layer) for layer in layers]
        return self._gather(position, columns)

    def token_states(self, index: int) -> np.ndarray:
        """float16 [n_response_tokens, n_token_layers, d_model] for example `index`."""
        if not self.manifest.token_layers:
            raise UserError("the store holds no per-token states; extract with --positions ...,response_tokens")
        for shard, order in zip(self._shards, self._row_order):
            hits = np.flatnonzero(order == index)
            if hits.size:
                offsets = shard["response_tokens_offsets"]
                return np.asarray(shard["response_tokens"][offsets[hits[0]] : offsets[hits[0] + 1]])
        raise IndexError(index)

    def _layer_column(self, layer: int) -> int:
        if layer not in self.layers:
            raise UserError(f"layer {layer} is not in the store; it has {self.layers[0]}..{self.layers[-1]}")
        return self.layers.index(layer)

    def _gather(self, name: str, columns: list[int] | None = None) -> np.ndarray:
        first = self._shards[0][name]
        shape = (len(self),) + (first.shape[1:] if columns is None else (len(columns),) + first.shape[2:])
        out = np.empty(shape, dtype=first.dtype)
        for shard, order in zip(self._shards, self._row_order):
            values = shard[name]
            out[np.asarray(order)] = values if columns is None else values[:, columns]
            _release(values)
        return out
