"""Extraction: rated examples + model -> an ActivationStore on disk (resumable, repairable, multi-process)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latent_reward.activations import store as store_format
from latent_reward.activations.forward import ResidualReader, as_float16
from latent_reward.activations.plan import Unit, make_shards, make_units, padded_tokens, prompt_chunks
from latent_reward.activations.store import MANIFEST, ActivationStore
from latent_reward.config import ExtractConfig
from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.io import exclusive, progress_bar, versions, write_json
from latent_reward.models.chat import RenderedExample, render_example
from latent_reward.models.devices import distributed_state
from latent_reward.models.loading import LoadedModel
from latent_reward.positions import TOKEN_POSITION

# Bump when a change to rendering or truncation changes stored states for the same inputs.
TOKENIZATION_VERSION = 3  # 3: the prompt is tokenized on its own, the response after it
BATCHING_VERSION = 2  # 2: prompts chunked by length, responses batched by length across the chunk's prompts
LOGPROB_VERSION = 2  # 2: log pi(y|x) includes the end-of-turn token after the response


def data_fingerprint(examples: list[Example]) -> str:
    """SHA-256 hex digest of the examples' ids, groups, ratings and messages, in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(
            json.dumps([example.id, example.group, example.rating, example.messages], ensure_ascii=False).encode()
        )
    return digest.hexdigest()


def request_fingerprint(
    examples: list[Example], config: ExtractConfig, model: str, dtype: str, random_init_seed: int | None
) -> dict:
    """The parts of a store's fingerprint known before the model is loaded."""
    return {
        "model": model,
        "random_init_seed": random_init_seed,
        "dtype": dtype,
        "tokenization": TOKENIZATION_VERSION,
        "batching": BATCHING_VERSION,
        "data": data_fingerprint(examples),
        "n_examples": len(examples),
        **({"logprob_version": LOGPROB_VERSION} if config.logprobs else {}),
        **config.fingerprint_fields(),
    }


@dataclass
class ExtractResult:
    """What `extract` returns: the opened store, timings, and how many shards were computed, reused or repaired."""

    store: ActivationStore
    seconds: float
    tokens: int  # tokens of the examples in the shards computed by this run
    computed_shards: int
    skipped_shards: int
    repaired_shards: int = 0


def _distributed() -> tuple[int, int, Any]:
    """(rank, world size, accelerate state) under `accelerate launch`, else (0, 1, None)."""
    state = distributed_state()
    if state is None:
        return 0, 1, None
    return state.process_index, state.num_processes, state


def extract(
    loaded: LoadedModel,
    examples: list[Example],
    out: str | Path,
    config: ExtractConfig | None = None,
    progress: bool = True,
    source: str | None = None,
) -> ExtractResult:
    """Read the residual stream at the configured positions for every example into `out`.

    Run again with the same arguments after an interruption, it computes only the missing shards
    and recomputes damaged ones (wrong size or checksum). It refuses to touch a folder holding a
    store made from other inputs, and a second process writing the same folder.
    """
    config = config or ExtractConfig()
    out = Path(out)
    rank, world, state = _distributed()
    with exclusive(out, "activation store") if rank == 0 else contextlib.nullcontext():
        return _extract(loaded, examples, out, config, progress, source, rank, world, state)


def _extract(loaded, examples, out: Path, config: ExtractConfig, progress, source, rank, world, state) -> ExtractResult:
    n_layers = loaded.info.n_layers
    deepest = math.ceil(round(config.depth * n_layers, 9))  # rounded first: 0.07 x 100 is 7.000000000000001
    layers = tuple(range(deepest + 1)) if config.layers is None else config.layers
    positions = tuple(p for p in config.positions if p != TOKEN_POSITION)
    token_layers = config.token_layers or ((n_layers,) if TOKEN_POSITION in config.positions else ())
    if any(not 0 <= layer <= n_layers for layer in (*layers, *token_layers)):
        raise UserError(f"a layer is out of range: this model has layers 0..{n_layers}")
    started = time.perf_counter()
    rendered = [render_example(loaded.tokenizer, e.messages, config.max_tokens) for e in examples]
    render_seconds = time.perf_counter() - started
    fingerprint = {
        **request_fingerprint(examples, config, loaded.info.name, loaded.info.dtype, loaded.info.random_init_seed),
        "model_identity": loaded.info.identity,
        "chat_template": loaded.info.chat_template,
    }
    if rank == 0:
        _prepare_folder(out, fingerprint, examples, loaded, layers, positions, token_layers, source)
    if state is not None:
        state.wait_for_everyone()

    units = make_units(rendered, config.share_prompts)
    shards = make_shards(units, config.shard_size)
    mine = [(i, shard) for i, shard in enumerate(shards) if i % world == rank]
    problems = {i: store_format.shard_problem(out, i) for i, _ in mine}
    todo = [(i, shard) for i, shard in mine if problems[i]]
    repaired = sum(problems[i] != "missing" for i, _ in todo)
    reader = ResidualReader(loaded.model, layers, positions, token_layers, config.logprobs)
    total_tokens = sum(len(rendered[i].input_ids) for _, shard in todo for u in shard for i in u.members)
    bar = progress_bar(sum(len(u.members) for _, s in todo for u in s), "extract", "ex", progress and rank == 0)
    forward_seconds, tokens_done = 0.0, 0
    try:
        for shard_index, shard in todo:
            tick = time.perf_counter()

            # the shard's start and the time spent before it are bound now: _run_shard calls this within the shard
            def advance(n_examples: int, n_tokens: int, *, tick: float = tick, before: float = forward_seconds) -> None:
                nonlocal tokens_done
                tokens_done += n_tokens
                bar.update(n_examples)
                bar.set_postfix(tok_s=f"{tokens_done / max(before + time.perf_counter() - tick, 1e-9):,.0f}")

            tensors = _run_shard(reader, shard, rendered, config, advance)
            forward_seconds += time.perf_counter() - tick
            store_format.write_shard(out, shard_index, tensors)
    finally:
        reader.close()
        bar.close()
    if state is not None:
        state.wait_for_everyone()
    seconds = time.perf_counter() - started
    if rank == 0:
        manifest = store_format.read_manifest(out)
        if todo or manifest.status != "complete":  # a run that reused everything keeps the measured timings
            timings = {
                "render_seconds": round(render_seconds, 3),
                "forward_seconds_this_run": round(forward_seconds, 3),
                "wall_seconds_this_run": round(seconds, 3),
                "tokens_this_run": tokens_done,
            }
            _finish_manifest(out, manifest, shards, units, rendered, config, timings, reader.device.type)
    if state is not None:
        state.wait_for_everyone()
    return ExtractResult(ActivationStore.open(out), seconds, total_tokens, len(todo), len(mine) - len(todo), repaired)


def _run_shard(
    reader: ResidualReader,
    shard: list[Unit],
    rendered: list[RenderedExample],
    config: ExtractConfig,
    advance: Callable[[int, int], None],
) -> dict[str, np.ndarray]:
    pieces: dict[str, list] = {}
    order: list[int] = []
    tokens: list[torch.Tensor] = []
    logprob_sums: list[float] = []
    for chunk in prompt_chunks(shard, config.prompt_tokens, reader.device.type):
        states = reader.run(chunk, rendered, config.batch_tokens)
        advance(len(states.example_index), sum(len(rendered[i].input_ids) for i in states.example_index))
        order.extend(states.example_index)
        for name, values in states.positions.items():
            pieces.setdefault(name, []).append(values)
        tokens.extend(states.token_states)
        logprob_sums.extend(states.logprob_sum)
    tensors = {name: as_float16(torch.cat(values)) for name, values in pieces.items()}
    response_counts = np.asarray(
        [rendered[i].spans.response_end - rendered[i].spans.response_start for i in order], dtype=np.int64
    )
    tensors["example_index"] = np.asarray(order, dtype=np.int64)
    tensors["n_tokens"] = np.asarray([len(rendered[i].input_ids) for i in order], dtype=np.int64)
    tensors["response_tokens_count"] = response_counts
    tensors["truncated"] = np.asarray([rendered[i].truncated for i in order], dtype=np.bool_)
    if tokens:
        tensors["response_tokens"] = as_float16(torch.cat(tokens))
        tensors["response_tokens_offsets"] = np.concatenate([[0], np.cumsum([t.shape[0] for t in tokens])]).astype(
            np.int64
        )
    if logprob_sums:
        tensors["logprob_sum"] = np.asarray(logprob_sums, dtype=np.float64)
        tensors["logprob_mean"] = (tensors["logprob_sum"] / (response_counts + 1)).astype(np.float32)  # + end of turn
    return tensors


def _prepare_folder(
    out: Path,
    fingerprint: dict,
    examples: list[Example],
    loaded: LoadedModel,
    layers,
    positions,
    token_layers,
    source: str | None,
) -> None:
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        differing = store_format.read_manifest(out).differences(fingerprint)
        if differing:
            raise UserError(
                f"{out} holds a store made from other inputs (different {', '.join(differing)}); "
                "choose another --out folder or delete it"
            )
        return
    if (out / store_format.SHARDS).exists() and any((out / store_format.SHARDS).iterdir()):
        raise UserError(f"{out} holds shards but no manifest; delete it or choose another --out folder")
    (out / store_format.SHARDS).mkdir(parents=True, exist_ok=True)
    store_format.write_examples(out, examples)
    manifest = store_format.new_manifest(
        fingerprint, loaded.info.as_dict(), positions, layers, token_layers, loaded.info.n_layers, source, versions()
    )
    write_json(manifest_path, manifest)


def _finish_manifest(
    out: Path,
    manifest: store_format.Manifest,
    shards,
    units,
    rendered,
    config: ExtractConfig,
    timings: dict,
    device_type: str,
) -> None:
    broken = [i for i in range(len(shards)) if store_format.shard_problem(out, i, checksum=False)]
    if broken:
        raise UserError(f"{len(broken)} shard(s) are missing or damaged after extraction; run the same command again")
    tokens_total = sum(len(r.input_ids) for r in rendered)
    computed = sum(u.prompt_length + sum(u.continuation_lengths) for u in units)
    padded = sum(
        padded_tokens(prompt_chunks(shard, config.prompt_tokens, device_type), config.batch_tokens, device_type)
        for shard in shards
    )
    stats = store_format.StoreStats(
        tokens=tokens_total,
        tokens_computed=computed,
        tokens_saved_by_prompt_sharing=tokens_total - computed,
        padding_fraction=round(1 - computed / max(padded, 1), 4),
        prompt_units=len(units),
        truncated=sum(r.truncated for r in rendered),
    )
    write_json(
        out / MANIFEST,
        manifest.model_copy(
            update={
                "status": "complete",
                "n_examples": len(rendered),
                "n_shards": len(shards),
                "shards": store_format.shard_records(out, len(shards)),
                "stats": stats,
                "timings": timings,
            }
        ),
    )
