"""The activation store: safetensors shards + examples.jsonl + manifest.json in one folder.

Layout
    manifest.json      fingerprint (model, data, positions, layers, max_tokens), status, stats
    examples.jsonl     one line per example, in dataset order: id, group, rating, aspects, meta
    shards/shard-NNNNN.safetensors
        <position>               float16 [n, n_layers_stored, d_model]
        response_tokens          float16 [n_tokens, n_token_layers, d_model]   (optional)
        response_tokens_offsets  int64   [n + 1]                                (optional)
        example_index            int64   [n]  row of each example in examples.jsonl
        n_tokens, response_tokens_count, truncated, logprob_mean               per-example stats
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from latent_reward.errors import UserError

MANIFEST = "manifest.json"
EXAMPLES = "examples.jsonl"
SHARDS = "shards"
_DTYPES = {"F16": np.float16, "F32": np.float32, "I64": np.int64, "BOOL": np.bool_, "I32": np.int32}


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name, then rename: a killed process never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


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


class ActivationStore:
    """Read side of a finished store. Open with `ActivationStore.open(folder)`."""

    def __init__(self, folder: Path, manifest: dict[str, Any], examples: list[dict[str, Any]]):
        self.folder = folder
        self.manifest = manifest
        self._examples = examples
        self._shards = [read_safetensors_memmap(p) for p in sorted((folder / SHARDS).glob("shard-*.safetensors"))]
        self._row_order = [shard["example_index"] for shard in self._shards]

    @classmethod
    def open(cls, folder: str | Path) -> ActivationStore:
        folder = Path(folder)
        manifest_path = folder / MANIFEST
        if not manifest_path.exists():
            raise UserError(f"{folder} is not an activation store (no {MANIFEST})")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("status") != "complete":
            raise UserError(f"the store in {folder} is unfinished; run the same extract command again to finish it")
        with (folder / EXAMPLES).open(encoding="utf-8") as handle:
            examples = [json.loads(line) for line in handle]
        return cls(folder, manifest, examples)

    # --- what the store holds -------------------------------------------------------------
    @property
    def positions(self) -> list[str]:
        return list(self.manifest["positions"])

    @property
    def layers(self) -> list[int]:
        return list(self.manifest["layers"])

    def __len__(self) -> int:
        return len(self._examples)

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self._examples]

    @property
    def groups(self) -> np.ndarray:
        return np.array([e["group"] for e in self._examples])

    @property
    def ratings(self) -> np.ndarray:
        return np.array([e["rating"] for e in self._examples], dtype=np.float64)

    @property
    def aspects(self) -> dict[str, np.ndarray]:
        """Per-aspect ratings (NaN where an example lacks the aspect)."""
        names = sorted({name for e in self._examples for name in e["aspects"]})
        return {n: np.array([e["aspects"].get(n, np.nan) for e in self._examples], dtype=np.float64) for n in names}

    @property
    def meta(self) -> list[dict[str, Any]]:
        return [e["meta"] for e in self._examples]

    @property
    def examples(self) -> list[dict[str, Any]]:
        return self._examples

    def stat(self, name: str) -> np.ndarray:
        """A per-example statistic saved during extraction (n_tokens, truncated, logprob_mean...)."""
        if not self._shards or name not in self._shards[0]:
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
        return out


def group_means(x: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of x's rows per group: (unique groups, means [n_groups, ...]) in sorted group order."""
    names, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(names)))
    sums = np.add.reduceat(np.asarray(x, dtype=np.float64)[order], starts, axis=0)
    return names, (sums / np.bincount(inverse)[(slice(None),) + (None,) * (x.ndim - 1)]).astype(np.float32)


def write_store(folder: str | Path, states: dict[str, np.ndarray], examples: list[dict[str, Any]], layers: list[int],
                manifest: dict[str, Any] | None = None, stats: dict[str, np.ndarray] | None = None) -> ActivationStore:
    """A complete store from arrays already in memory (states[position]: [n, n_layers, d]).

    For activations computed elsewhere, and for tests with planted signals. `examples` are dicts
    with id, group, rating, aspects, meta and messages, in row order.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    (folder / SHARDS).mkdir(parents=True, exist_ok=True)
    n = len(examples)
    tensors = {name: np.ascontiguousarray(values, dtype=np.float16) for name, values in states.items()}
    tensors["example_index"] = np.arange(n, dtype=np.int64)
    for name, values in (stats or {}).items():
        tensors[name] = np.ascontiguousarray(values)
    save_file(tensors, str(folder / SHARDS / "shard-00000.safetensors"))
    atomic_write_text(folder / EXAMPLES, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples))
    full = {"format": "latent-reward activation store", "format_version": 1, "status": "complete",
            "positions": list(states), "layers": list(layers), "token_layers": [], "n_examples": n, "n_shards": 1,
            "fingerprint": {"n_examples": n}, **(manifest or {})}
    atomic_write_text(folder / MANIFEST, json.dumps(full, indent=1))
    return ActivationStore.open(folder)
