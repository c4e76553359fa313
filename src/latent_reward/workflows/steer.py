"""`latent-reward steer`: generate with the residual stream pushed along the reward direction, and score the replies
with scorers that do not share the probe's weights. Writes results.json, steer.csv (every reply and score),
steer.html and run.json."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from latent_reward.activations.store import ActivationStore
from latent_reward.activations.tokens import position_states
from latent_reward.config import DataSpec, Device, Spec
from latent_reward.data.splits import hash_order
from latent_reward.errors import UserError
from latent_reward.evaluation.baselines import BASELINES, TextData
from latent_reward.evaluation.results import LENGTH, TEXT_STATS, TFIDF_RESPONSE
from latent_reward.experiments import steer as steering
from latent_reward.experiments.steer import CIRCULAR, SteerConfig, SteerResult
from latent_reward.io import exclusive, prepare_output_folder, write_csv, write_json
from latent_reward.judging.client import Endpoint
from latent_reward.models.chat import prompt_token_ids
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe
from latent_reward.report.steer import write_steer_report
from latent_reward.workflows.common import probe_model, write_run_json

COHERENCE = ("nll", "kl", "distinct_2", "degenerate", "tokens")


class SteerJob(Spec):
    probe: Path
    model: str | None = None  # the steered model (default: the one the probe was trained on)
    store: Path | None = None  # the probe's activation store (default: the one it was trained on)
    data: DataSpec | None = None  # prompts to steer on (default: the store's held-out prompts)
    scorer_probes: tuple[Path, ...] = ()  # probes on other models, re-reading the replies
    judge: Endpoint | None = None
    config: SteerConfig = SteerConfig()
    out: Path
    device: Device = "auto"  # every model's (the steered one and the scorer probes')
    device_map: str | None = None


def run_steer(job: SteerJob, progress: bool = True) -> SteerResult:
    started = time.perf_counter()
    probe = Probe.load(job.probe)
    store_folder = job.store or (Path(probe.info["store"]) if probe.info.get("store") else None)
    if store_folder is None:
        raise UserError("the probe does not record its activation store; pass --store")
    store = ActivationStore.open(store_folder)
    if store.manifest["model"]["name"] != probe.info.get("model"):
        raise UserError(f"the store holds states of {store.manifest['model']['name']}, the probe reads {probe.info.get('model')}")
    out = prepare_output_folder(job.out)
    with exclusive(out, "steer job"):
        loaded = probe_model(probe, job.model, device=job.device, device_map=job.device_map)
        layers = steering.steer_layers(probe, loaded.info.n_layers, job.config)
        vectors, sd = {}, {}
        for layer in layers:
            vectors[layer], sd[layer] = steering.direction_vectors(store, probe, layer, job.config.directions, job.config.seed,
                                                                      job.config.random_directions)
        conversations = held_out_prompts(store, probe, job)
        prompts = [prompt_token_ids(loaded.tokenizer, c) for c in conversations]
        stops = ("\nUser:",) if loaded.info.chat_template == "fallback" else ()
        frame = steering.generate_conditions(loaded, prompts, steering.conditions(job.config, layers, vectors, sd), job.config, stops)
        full = [[*conversations[p], {"role": "assistant", "content": reply}] for p, reply in zip(frame.prompt, frame.reply)]
        scorers = _score(frame, full, store, probe, loaded, job, out, progress)
        frame["degenerate"] = frame["degenerate"].astype(float)
        result = SteerResult(
            probe={k: v for k, v in probe.info.items() if not k.endswith("_groups")}, layers=layers, sd=sd,
            directions=list(job.config.directions), strengths=list(job.config.strengths), scorers=scorers, coherence=list(COHERENCE),
            prompts=len(prompts), samples=job.config.samples,
            effects=steering.effects(frame, [*scorers, CIRCULAR, *COHERENCE], layers, job.config),
            examples=[e for layer in layers for e in steering.example_replies(frame, layer, "probe", [c[-1]["content"] for c in conversations])],
            seconds=time.perf_counter() - started)
        frame.insert(0, "prompt_text", [conversations[p][-1]["content"][:500] for p in frame.prompt])
        write_csv(out / "steer.csv", frame)
        write_json(out / "results.json", result)
        write_steer_report(result, out)
        write_run_json(out, "steer", job, {"total": result.seconds})
        return result


def held_out_prompts(store: ActivationStore, probe: Probe, job: SteerJob) -> list[list[dict[str, str]]]:
    """Prompts the probe was neither trained nor validated on: from --data, else from the store; a seeded choice."""
    excluded = set(probe.info.get("train_groups") or ()) | set(probe.info.get("validation_groups") or ())
    examples = job.data.load().examples if job.data else store.examples
    by_group = {e.group: e.prompt_messages for e in examples if e.group not in excluded}
    if not by_group:
        raise UserError("no prompt left that the probe was not trained or validated on")
    chosen = hash_order(list(by_group), job.config.seed)[: job.config.prompts]
    return [by_group[g] for g in chosen]


def _score(frame: pd.DataFrame, conversations, store: ActivationStore, probe: Probe, loaded: LoadedModel, job: SteerJob,
           out: Path, progress: bool) -> list[str]:
    """Adds every scorer's column to the frame (NaN for empty replies, which only the coherence measures count);
    returns the independent scorers' names."""
    scored = np.array([bool(c[-1]["content"].strip()) for c in conversations])
    kept = [c for c, keep in zip(conversations, scored) if keep]

    def column(values) -> np.ndarray:
        full = np.full(len(conversations), np.nan)
        full[scored] = values
        return full

    names = []
    for baseline in (b for b in BASELINES if b.name in (TFIDF_RESPONSE, TEXT_STATS)):
        frame[baseline.name] = column(_text_scores(baseline, store, probe, [c[-1]["content"] for c in kept], [c[:-1] for c in kept]))
        names.append(baseline.name)
    frame[LENGTH] = frame["tokens"].astype(float)
    names.append(LENGTH)
    max_tokens = probe.info.get("max_tokens")
    frame[CIRCULAR] = column(probe.predict(position_states(loaded, kept, probe.info["position"], int(probe.info["layer"]), max_tokens)))
    for folder in job.scorer_probes:
        other = Probe.load(folder)
        other_model = probe_model(other, device=job.device, device_map=job.device_map)
        name = f"probe on {other_model.info.name}"
        frame[name] = column(other.predict(position_states(other_model, kept, other.info["position"], int(other.info["layer"]),
                                                          other.info.get("max_tokens"))))
        names.append(name)
    if job.judge is not None:
        names.append(_judge_scores(frame, conversations, scored, job, out, progress))
    return names


def _text_scores(baseline, store: ActivationStore, probe: Probe, replies: list[str], prompts) -> np.ndarray:
    """A text baseline trained on the probe's training and validation prompts' rated responses, scoring the replies."""
    allowed = set(probe.info.get("train_groups") or ()) | set(probe.info.get("validation_groups") or ())
    rows = [e for e in store.examples if e.group in allowed]
    if not rows:
        raise UserError("the probe records no training prompts to train the text scorers on")
    n = len(rows)
    data = TextData(y=np.concatenate([[e.rating for e in rows], np.zeros(len(replies))]),
                    groups=np.array([e.group for e in rows] + [f"reply{i}" for i in range(len(replies))]),
                    prompts=[e.prompt_text for e in rows] + ["\n".join(m["content"] for m in p) for p in prompts],
                    responses=[e.response for e in rows] + replies, generators=[None] * (n + len(replies)))
    train = np.arange(n + len(replies)) < n
    return baseline.fit_predict(data, train)[n:]


def _judge_scores(frame: pd.DataFrame, conversations, scored: np.ndarray, job: SteerJob, out: Path, progress: bool) -> str:
    from latent_reward.data.schema import make_example
    from latent_reward.experiments.judge import JudgeConfig, judge_examples
    from latent_reward.judging.cache import JudgeCache

    examples = [make_example("steer", i, c[:-1], c[-1]["content"], 0.0, meta={"unrated": True})
                for i, (c, keep) in enumerate(zip(conversations, scored)) if keep]
    cache = JudgeCache(out / "judge-cache.sqlite")
    try:
        rated, _ = judge_examples(examples, job.judge, cache, JudgeConfig(), progress)
    finally:
        cache.close()
    scores = {e.id: e.rating for e in rated}
    name = f"judge {job.judge.model}"
    frame[name] = [scores.get(f"steer:{i}", np.nan) for i in range(len(conversations))]
    return name
