"""Extraction: rated examples + model -> an ActivationStore on disk (resumable, multi-process)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from latent_reward import __version__
from latent_reward.activations.forward import ResidualReader, as_float16
from latent_reward.activations.plan import Unit, make_batches, make_shards, make_units
from latent_reward.positions import TOKEN_POSITION
from latent_reward.activations.store import EXAMPLES, MANIFEST, SHARDS, ActivationStore, atomic_write_text
from latent_reward.config import ExtractConfig
from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.models.chat import RenderedExample, render_example
from latent_reward.models.loading import LoadedModel


def data_fingerprint(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.group, example.rating, example.messages], ensure_ascii=False).encode())
    return digest.hexdigest()


def request_fingerprint(examples: list[Example], config: ExtractConfig, model: str, dtype: str, random_init_seed: int | None) -> dict:
    """The parts of a store's fingerprint known before the model is loaded."""
    return {
        "model": model,
        "random_init_seed": random_init_seed,
        "dtype": dtype,
        "truncation_policy": 2,  # the prompt's cap depends on max_tokens alone (see models.chat)
        "data": data_fingerprint(examples),
        "n_examples": len(examples),
        **config.fingerprint_fields(),
    }


@dataclass
class ExtractResult:
    store: ActivationStore
    seconds: float
    tokens: int
    computed_shards: int
    skipped_shards: int


def _distributed() -> tuple[int, int, Any]:
    """(rank, world size, accelerate state) under `accelerate launch`, else (0, 1, None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    from accelerate import PartialState

    state = PartialState()
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

    Run again with the same arguments after an interruption, it computes only the missing
    shards. It refuses to touch a folder holding a store made from other inputs.
    """
    config = config or ExtractConfig()
    out = Path(out)
    rank, world, state = _distributed()
    n_layers = loaded.info.n_layers
    layers = tuple(range(n_layers + 1)) if config.layers is None else config.layers
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

    units = make_units(rendered, config.share_prompts, config.batch_tokens)
    shards = make_shards(units, config.shard_size)
    mine = [(i, shard) for i, shard in enumerate(shards) if i % world == rank]
    todo = [(i, shard) for i, shard in mine if not _shard_path(out, i).exists()]
    reader = ResidualReader(loaded.model, layers, positions, token_layers, config.logprobs)
    total_tokens = sum(len(rendered[i].input_ids) for _, shard in todo for u in shard for i in u.members)
    bar = tqdm(total=sum(len(u.members) for _, s in todo for u in s), unit="ex", disable=not progress or rank != 0,
               desc="extract", dynamic_ncols=True)
    forward_seconds, tokens_done = 0.0, 0
    try:
        for shard_index, shard in todo:
            tick = time.perf_counter()

            def advance(n_examples: int, n_tokens: int) -> None:
                nonlocal tokens_done
                tokens_done += n_tokens
                bar.update(n_examples)
                bar.set_postfix(tok_s=f"{tokens_done / max(forward_seconds + time.perf_counter() - tick, 1e-9):,.0f}")

            tensors = _run_shard(reader, shard, rendered, config, advance)
            forward_seconds += time.perf_counter() - tick
            _write_shard(_shard_path(out, shard_index), tensors)
    finally:
        reader.close()
        bar.close()
    if state is not None:
        state.wait_for_everyone()
    seconds = time.perf_counter() - started
    already_complete = json.loads((out / MANIFEST).read_text()).get("status") == "complete"
    if rank == 0 and not (already_complete and not todo):  # a run that reused everything keeps the measured timings
        _finish_manifest(out, shards, units, rendered, render_seconds, forward_seconds, seconds, tokens_done, config)
    if state is not None:
        state.wait_for_everyone()
    return ExtractResult(ActivationStore.open(out), seconds, total_tokens, len(todo), len(mine) - len(todo))


def _shard_path(out: Path, index: int) -> Path:
    return out / SHARDS / f"shard-{index:05d}.safetensors"


def _run_shard(reader: ResidualReader, shard: list[Unit], rendered: list[RenderedExample], config: ExtractConfig,
               advance: Callable[[int, int], None]) -> dict[str, np.ndarray]:
    pieces: dict[str, list] = {}
    order: list[int] = []
    tokens: list[torch.Tensor] = []
    logprobs: list[float] = []
    for batch in make_batches(shard, config.batch_tokens):
        states = reader.run(batch, rendered)
        advance(len(states.example_index), sum(len(rendered[i].input_ids) for i in states.example_index))
        order.extend(states.example_index)
        for name, values in states.positions.items():
            pieces.setdefault(name, []).append(values)
        tokens.extend(states.token_states)
        logprobs.extend(states.logprob_mean)
    tensors = {name: as_float16(torch.cat(values)) for name, values in pieces.items()}
    tensors["example_index"] = np.asarray(order, dtype=np.int64)
    tensors["n_tokens"] = np.asarray([len(rendered[i].input_ids) for i in order], dtype=np.int64)
    tensors["response_tokens_count"] = np.asarray(
        [rendered[i].spans.response_end - rendered[i].spans.response_start for i in order], dtype=np.int64)
    tensors["truncated"] = np.asarray([rendered[i].truncated for i in order], dtype=np.bool_)
    if tokens:
        tensors["response_tokens"] = as_float16(torch.cat(tokens))
        tensors["response_tokens_offsets"] = np.concatenate([[0], np.cumsum([t.shape[0] for t in tokens])]).astype(np.int64)
    if logprobs:
        tensors["logprob_mean"] = np.asarray(logprobs, dtype=np.float32)
    return tensors


def _write_shard(path: Path, tensors: dict[str, np.ndarray]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    save_file(tensors, str(temporary))
    os.replace(temporary, path)


def _prepare_folder(out: Path, fingerprint: dict, examples: list[Example], loaded: LoadedModel, layers, positions, token_layers,
                    source: str | None) -> None:
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        differing = [k for k in fingerprint if existing.get("fingerprint", {}).get(k) != fingerprint[k]]
        if differing:
            raise UserError(
                f"{out} holds a store made from other inputs (different {', '.join(differing)}); "
                "choose another --out folder or delete it"
            )
        return
    if out.exists() and any(out.iterdir()):
        if (out / SHARDS).exists():
            raise UserError(f"{out} holds shards but no manifest; delete it or choose another --out folder")
    (out / SHARDS).mkdir(parents=True, exist_ok=True)
    lines = "".join(
        json.dumps({"id": e.id, "group": e.group, "rating": e.rating, "aspects": e.aspects, "meta": e.meta,
                    "messages": e.messages}, ensure_ascii=False) + "\n"
        for e in examples
    )
    atomic_write_text(out / EXAMPLES, lines)
    manifest = {
        "format": "latent-reward activation store",
        "format_version": 1,
        "status": "incomplete",
        "fingerprint": fingerprint,
        "data_source": source,
        "model": loaded.info.as_dict(),
        "positions": list(positions),
        "layers": list(layers),
        "token_layers": list(token_layers),
        "residual_convention": (
            "index 0 = input of the first block (embeddings); index i = raw output of block i; "
            f"index {loaded.info.n_layers} = raw output of the last block, BEFORE the final norm "
            "(transformers' last hidden_states entry has the norm applied)"
        ),
        "dtype": "float16",
        "versions": versions(),
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))


def _finish_manifest(out: Path, shards, units, rendered, render_seconds, forward_seconds, seconds, tokens_done, config) -> None:
    manifest = json.loads((out / MANIFEST).read_text())
    missing = [i for i in range(len(shards)) if not _shard_path(out, i).exists()]
    if missing:
        raise UserError(f"{len(missing)} shard(s) are missing after extraction; run the same command again")
    tokens_total = sum(len(r.input_ids) for r in rendered)
    prompt_tokens_run = sum(u.prompt_length + sum(u.continuation_lengths) for u in units)
    padded = sum(
        len(batch) * max(u.prompt_length for u in batch) + sum(len(u.members) for u in batch) * max(max(u.continuation_lengths) for u in batch)
        for shard in shards for batch in make_batches(shard, config.batch_tokens)
    )
    manifest.update(
        status="complete",
        n_examples=len(rendered),
        n_shards=len(shards),
        stats={
            "tokens": tokens_total,
            "tokens_computed": prompt_tokens_run,
            "tokens_saved_by_prompt_sharing": tokens_total - prompt_tokens_run,
            "padding_fraction": round(1 - prompt_tokens_run / max(padded, 1), 4),
            "prompt_units": len(units),
            "truncated": sum(r.truncated for r in rendered),
        },
        timings={
            "render_seconds": round(render_seconds, 3),
            "forward_seconds_this_run": round(forward_seconds, 3),
            "wall_seconds_this_run": round(seconds, 3),
            "tokens_this_run": tokens_done,
        },
    )
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))


def versions() -> dict[str, str]:
    import transformers

    return {"latent_reward": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__}
