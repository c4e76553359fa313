"""The scorers `steer` reads its replies with, and which of them the primary contrast uses.

The primary scorer, in this order: a judge when one is given; else a probe on another model re-reading the replies;
else the text scorer chosen on validation. Not the steered model's own probe re-reading the replies (with the
unsteered model): the push moves the very representation that probe reads, so replies that move the model's own
states along the direction without being any better would count; that reading is kept as a manipulation check only.
A judge or another model's probe shares no weights with the push, but neither exists offline by default. The default
therefore reads the text alone: a ridge on TF-IDF or on length + text statistics, fitted on the first
`max_new_tokens` tokens of the rated responses to the probe's training prompts, so that it is fitted on text as long
as the replies it scores (fitted on whole responses, such a scorer was nearly flat on 48-token replies: its spread fell
from 0.42 to 0.10 rating points). Of the two, the one whose prefixes predict the ratings of the probe's validation
prompts better (Pearson r) is primary, chosen before any reply is scored; both validation r are on the page, since they
bound what the primary contrast can detect.

Empty replies are counted, not dropped: every rating scorer gives an empty reply the lowest score it gave any
non-empty reply in the run (no answer counts as the worst answer seen), length counts its tokens, and the share of
empty replies is a coherence measure. Dropping them would compare each condition on the prompts where it still
answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from latent_reward.activations.store import ActivationStore
from latent_reward.data.splits import hash_order
from latent_reward.errors import UserError
from latent_reward.evaluation.baselines import BASELINES, TextData
from latent_reward.evaluation.metrics import pearson
from latent_reward.evaluation.results import LENGTH, TEXT_STATS, TFIDF_RESPONSE
from latent_reward.judging.cache import JudgeCache
from latent_reward.judging.client import Endpoint
from latent_reward.judging.rating import overall_ratings
from latent_reward.models.loading import LoadedModel
from latent_reward.probes import Probe
from latent_reward.probes.reader import ProbeReader

CIRCULAR = "steered probe (circular: manipulation check)"
TEXT_SCORERS = (TFIDF_RESPONSE, TEXT_STATS)

Conversation = list[dict[str, str]]


@dataclass
class JudgeScorer:
    """A judge at an OpenAI-compatible endpoint, with the cache its answers are kept in (opened by the caller)."""

    endpoint: Endpoint
    cache: JudgeCache

    @property
    def name(self) -> str:
        return f"judge {self.endpoint.model}"

    def __call__(self, conversations: list[Conversation], progress: bool = True) -> np.ndarray:
        """The judge's overall rating of each conversation's last (assistant) turn; NaN where it gave none."""
        return overall_ratings(conversations, self.endpoint, self.cache, progress)


@dataclass
class Scoring:
    """What scored the replies: the independent scorers' names, the primary one and why, and the text scorers'
    validation r on prefixes."""

    names: list[str]
    primary: str
    reason: str
    validation: dict[str, float] = field(default_factory=dict)


def prefix_name(name: str, tokens: int) -> str:
    return f"{name} ({tokens}-token prefixes)"


def prefixes(tokenizer, texts: list[str], tokens: int) -> list[str]:
    """Each text cut to its first `tokens` tokens (the model's tokenizer): as long as a reply of that many tokens."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return tokenizer.batch_decode([i[:tokens] for i in ids], skip_special_tokens=True)


def _choice_groups(probe: Probe) -> tuple[set[str], set[str]]:
    """(fitting prompts, choosing prompts): the probe's training and validation prompts, or, when it records no
    validation prompts, its training prompts split 80 / 20 in a seeded order."""
    train, validation = set(probe.info.train_groups), set(probe.info.validation_groups)
    if not train:
        raise UserError("the probe records no training prompts to train the text scorers on")
    if not validation:
        ordered = hash_order(sorted(train), 0)
        validation = set(ordered[int(0.8 * len(ordered)) :])
        train -= validation
    return train, validation


def text_scores(
    store: ActivationStore, probe: Probe, tokenizer, tokens: int, replies: list[str], prompts: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every text scorer's scores of `replies` (fitted on the probe's training and validation prompts' responses cut to
    `tokens` tokens) by name, and each one's Pearson r on the validation prompts when fitted on the training ones."""
    train_groups, validation_groups = _choice_groups(probe)
    rows = [e for e in store.examples if e.group in train_groups | validation_groups]
    n = len(rows)
    data = TextData(
        y=np.concatenate([[e.rating for e in rows], np.zeros(len(replies))]),
        groups=np.array([e.group for e in rows] + [f"reply{i}" for i in range(len(replies))]),
        prompts=[e.prompt_text for e in rows] + prompts,
        responses=prefixes(tokenizer, [e.response for e in rows], tokens) + replies,
        generators=[None] * (n + len(replies)),
    )
    fit = np.array([e.group in train_groups for e in rows] + [False] * len(replies))
    held = np.array([e.group in validation_groups for e in rows] + [False] * len(replies))
    scores, validation = {}, {}
    for baseline in (b for b in BASELINES if b.name in TEXT_SCORERS):
        name = prefix_name(baseline.name, tokens)
        validation[name] = pearson(data.y[held], baseline.fit_predict(data, fit)[held]) if held.any() else float("nan")
        scores[name] = baseline.fit_predict(data, fit | held)[n:]
    return scores, validation


def _with_empty(values: np.ndarray, answered: np.ndarray) -> np.ndarray:
    """Scores for every reply from those of the answered (non-empty) ones: an empty reply gets the lowest score any
    answered reply got."""
    out = np.full(len(answered), np.nan)
    out[answered] = values
    finite = np.asarray(values, dtype=np.float64)[np.isfinite(values)] if len(values) else np.array([])
    if finite.size:
        out[~answered] = finite.min()
    return out


def score_replies(
    frame: pd.DataFrame,
    conversations: list[Conversation],
    store: ActivationStore,
    probe: Probe,
    loaded: LoadedModel,
    tokens: int,
    readers: Sequence[ProbeReader] = (),
    judge: JudgeScorer | None = None,
    progress: bool = True,
) -> Scoring:
    """Adds every scorer's column to `frame` (one row per reply, in the order of `conversations`, each ending in its
    reply) and the circular reading's; returns which scorers are independent and which is primary."""
    answered = np.array([bool(c[-1]["content"].strip()) for c in conversations])
    kept = [c for c, keep in zip(conversations, answered) if keep]
    texts, validation = text_scores(
        store,
        probe,
        loaded.tokenizer,
        tokens,
        [c[-1]["content"] for c in kept],
        ["\n".join(m["content"] for m in c[:-1]) for c in kept],
    )
    for name, values in texts.items():
        frame[name] = _with_empty(values, answered)
    frame[LENGTH] = frame["tokens"].astype(float)
    names = [*texts, LENGTH]
    frame[CIRCULAR] = _with_empty(ProbeReader(probe, loaded).read(kept), answered)
    readings = []
    for reader in readers:
        name = f"probe on {reader.model.info.name}"
        frame[name] = _with_empty(reader.read(kept), answered)
        readings.append(name)
    names += readings
    if judge is not None:
        frame[judge.name] = _with_empty(judge(kept, progress), answered)
        names.append(judge.name)
        return Scoring(names, judge.name, "a judge was given: it shares nothing with the steered model", validation)
    if readings:
        reason = "a probe on another model re-reads the text: it shares no weights with the push"
        return Scoring(names, readings[0], reason, validation)
    chosen = max(texts, key=lambda name: validation[name] if np.isfinite(validation[name]) else -np.inf)
    reason = (
        f"the text scorer whose {tokens}-token prefixes of the validation prompts' responses predicted their "
        f"ratings best (r {validation[chosen]:.3f}), chosen before scoring any reply"
    )
    return Scoring(names, chosen, reason, validation)
