"""The activation store: safetensors shards + examples.jsonl + manifest.json in one folder.

This module is the one owner of the format: the manifest and its fingerprint, the example
records, the shards and their integrity records. Extraction writes through it; everything else
reads through `ActivationStore`.

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
from pathlib import Path
from typing import Any

import numpy as np

from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.io import atomic_write_bytes, atomic_write_text, read_json, write_json

MANIFEST = "manifest.json"
EXAMPLES = "examples.jsonl"
SHARDS = "shards"
FORMAT = "latent-reward activation store"
FORMAT_VERSION = 2
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "BOOL": np.bool_, "I32": np.int32}


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
    write_json(_record_path(path), {"bytes": len(data), "sha256": sha256_bytes(data),
                                    "examples": int(len(tensors["example_index"]))})


def shard_problem(folder: Path, index: int, record: dict[str, Any] | None = None, checksum: bool = True) -> str | None:
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
            record = json.loads(record_file.read_text())
        except (OSError, json.JSONDecodeError):
            return "damaged integrity record"
    size = path.stat().st_size
    if size != record["bytes"]:
        return f"{size:,} bytes on disk, {record['bytes']:,} expected"
    if checksum and sha256_bytes(path.read_bytes()) != record["sha256"]:
        return "checksum mismatch"
    return None


def shard_records(folder: Path, n_shards: int) -> list[dict[str, Any]]:
    """The integrity records of shards 0..n-1, for the finished manifest."""
    return [{"file": shard_path(folder, i).name, **read_json(_record_path(shard_path(folder, i)), "shard record")}
            for i in range(n_shards)]


def fingerprint_differences(manifest: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Keys of `wanted` whose value the stored fingerprint does not have."""
    stored = manifest.get("fingerprint", {})
    return [key for key, value in wanted.items() if stored.get(key) != value]


def matching_complete_store(folder: Path, wanted: dict[str, Any]) -> bool:
    """Whether `folder` holds a complete store whose fingerprint includes `wanted`."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return False
    manifest = read_json(path, "store manifest")
    return manifest.get("status") == "complete" and not fingerprint_differences(manifest, wanted)


def new_manifest(fingerprint: dict[str, Any], model: dict[str, Any], positions, layers, token_layers, n_layers: int,
                 source: str | None, versions: dict[str, str]) -> dict[str, Any]:
    """The manifest of a store about to be written (status "incomplete"; shards and stats are added when it is finished)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "status": "incomplete",
        "fingerprint": fingerprint,
        "data_source": source,
        "model": model,
        "positions": list(positions),
        "layers": list(layers),
        "token_layers": list(token_layers),
        "residual_convention": (
            "index 0 = input of the first block (embeddings); index i = raw output of block i; "
            f"index {n_layers} = raw output of the last block, BEFORE the final norm "
            "(transformers' last hidden_states entry has the norm applied)"
        ),
        "dtype": "float16",
        "versions": versions,
    }


def write_examples(folder: Path, examples: list[Example]) -> None:
    """Write the examples to the store's examples.jsonl, one record per line, atomically."""
    atomic_write_text(Path(folder) / EXAMPLES, "".join(json.dumps(e.to_record(), ensure_ascii=False) + "\n" for e in examples))


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


class ActivationStore:
    """Read side of a finished store. Open with `ActivationStore.open(folder)`."""

    def __init__(self, folder: Path, manifest: dict[str, Any], examples: list[Example]):
        self.folder = folder
        self.manifest = manifest
        self._examples = examples
        self._shards = [read_safetensors_memmap(shard_path(folder, i)) for i in range(manifest["n_shards"])]
        self._row_order = [shard["example_index"] for shard in self._shards]

    @classmethod
    def open(cls, folder: str | Path, verify: bool = False) -> ActivationStore:
        """Open a complete store. Each shard's size is checked against the manifest (cheap);
        `verify` also checks every shard's SHA-256."""
        folder = Path(folder)
        if not (folder / MANIFEST).exists():
            raise UserError(f"{folder} is not an activation store (no {MANIFEST})")
        manifest = read_json(folder / MANIFEST, "store manifest")
        if manifest.get("status") != "complete":
            raise UserError(f"the store in {folder} is unfinished; run the same extract command again to finish it")
        for index, record in enumerate(manifest.get("shards", [])):
            problem = shard_problem(folder, index, record, checksum=verify)
            if problem:
                raise UserError(f"{shard_path(folder, index)} is damaged ({problem}); run the same extract command "
                                "again to recompute it")
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
        return list(self.manifest["positions"])

    @property
    def layers(self) -> list[int]:
        """Residual indices stored for every position, in column order."""
        return list(self.manifest["layers"])

    @property
    def n_layers(self) -> int:
        """The model's number of blocks (the last residual index)."""
        return int(self.manifest["model"]["n_layers"])

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
        if not self.manifest.get("token_layers"):
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
