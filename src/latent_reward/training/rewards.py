"""Rewards for online RL, as the callables TRL's trainers take: f(prompts, completions, **kwargs) -> list[float].

A reward is a saved probe on another model (reading the prompt and completion), a judge behind an
OpenAI-compatible endpoint (`judge`, with the endpoint given), or any Python function (`module:function`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from latent_reward.errors import UserError
from latent_reward.judging.client import Endpoint

Reward = Callable[..., list[float]]


def _text(value) -> str:
    """A completion or prompt in TRL's conversational form (a list of messages) or as plain text."""
    if isinstance(value, list):
        return value[-1]["content"] if value else ""
    return str(value)


def _conversation(prompt, completion) -> list[dict[str, str]]:
    history = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    return [*history, {"role": "assistant", "content": _text(completion) or " "}]


def probe_reward(folder: str | Path) -> Reward:
    """A saved probe, read on its own model: its estimate of each completion's rating."""
    from latent_reward.probes import Probe
    from latent_reward.probes.reader import ProbeReader

    probe = Probe.load(folder)
    if probe.info.reads_prompt_only:
        raise UserError(
            f"the reward probe {folder} reads {probe.info.position}, before the response: every completion of a prompt "
            "would get the same reward (no advantage to learn from); use a probe that reads the response"
        )
    reader = ProbeReader.load(probe)

    def reward(prompts, completions, **kwargs) -> list[float]:
        return [float(v) for v in reader.read([_conversation(p, c) for p, c in zip(prompts, completions)])]

    reward.__name__ = f"probe_{Path(folder).name}"
    return reward


def judge_reward(endpoint: Endpoint, cache_folder: Path) -> Reward:
    """The judge's overall score (1-10); an item the judge could not rate gets the batch's mean."""
    from latent_reward.judging.cache import JudgeCache
    from latent_reward.judging.rating import overall_ratings

    def reward(prompts, completions, **kwargs) -> list[float]:
        conversations = [_conversation(p, c) for p, c in zip(prompts, completions)]
        cache = JudgeCache(cache_folder / "judge-cache.sqlite")
        try:
            values = overall_ratings(conversations, endpoint, cache, progress=False)
        finally:
            cache.close()
        fill = float(np.nanmean(values)) if np.isfinite(values).any() else 0.0
        return [float(v) if np.isfinite(v) else fill for v in values]

    reward.__name__ = "judge"
    return reward


def function_reward(spec: str) -> Reward:
    """`module:function`, imported; called with the prompts and completions."""
    module_name, _, name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise UserError(f"cannot import the reward {spec!r} ({error})") from None
    return function


def make_reward(spec: str, endpoint: Endpoint | None, out: Path) -> Reward:
    """`judge` (the judge at `endpoint`), a probe folder, or `module:function`; calls that fail become one clear
    error."""
    if spec == "judge":
        if endpoint is None:
            raise UserError("--reward judge needs the judge's endpoint (--base-url)")
        inner = judge_reward(endpoint, out)
    elif Path(spec).is_dir():
        inner = probe_reward(spec)
    elif ":" in spec:
        inner = function_reward(spec)
    else:
        raise UserError(f"--reward must be judge, a probe folder or module:function, not {spec!r}")

    def reward(prompts, completions, **kwargs) -> list[float]:
        try:
            values = inner(prompts=prompts, completions=completions, **kwargs)
        except UserError:
            raise
        except Exception as error:  # the user's callable failed: one line, not the trainer's traceback
            raise UserError(f"the reward {spec!r} failed: {type(error).__name__}: {error}") from None
        if len(values) != len(completions):
            raise UserError(f"the reward {spec!r} returned {len(values)} values for {len(completions)} completions")
        return [float(v) for v in values]

    reward.__name__ = getattr(inner, "__name__", "reward")
    return reward
