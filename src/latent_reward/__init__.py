"""latent-reward: ask a chat model what reward it expects, by probing its residual stream.

    import latent_reward as lr
    outcome = lr.run(lr.RunConfig(data=lr.DataSpec(source="../shared/data/ultrafeedback_binarized_subset_1200.jsonl")))
    store = lr.extract(lr.load_model("smollm2-135m-instruct"), lr.load_dataset(FILE).examples, "runs/x/store")

    # in memory, for small jobs: states as arrays, a store from them (or from your own arrays), the analyses on it
    captured = lr.capture(model, examples, positions=("assistant_start", "eot"), layers=[4, 8, 12])
    store = lr.ActivationStore.from_arrays({"eot": states}, ratings, groups)     # states [n, layers, d]
    fit = lr.sweep(store)
    with lr.steering(model, lr.steering_vector(fit.best_probe, store), strength=4):
        ...                                                                      # any generate call

Every command is a function returning its typed result: lr.score, lr.steer, lr.generate, lr.compare,
lr.conversation, lr.judge, lr.respond, lr.train, lr.verify (see latent_reward.api). Names are imported on first
use, so `import latent_reward` stays fast, and importing it changes no global state (matplotlib included).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_API = "latent_reward.api"
_PUBLIC = {
    "load_model": "latent_reward.models.loading",
    "load_dataset": "latent_reward.data.formats",
    "extract": "latent_reward.activations.extract",
    "ActivationStore": "latent_reward.activations.store",
    "Capture": "latent_reward.activations.capture",
    "sweep": "latent_reward.analysis.sweep",
    "SweepConfig": "latent_reward.analysis.sweep",
    "reward_readout": "latent_reward.experiments.readout",
    "ReadoutConfig": "latent_reward.experiments.readout",
    "prompt_only": "latent_reward.experiments.prompt_only",
    "PromptOnlyConfig": "latent_reward.experiments.prompt_only",
    "Probe": "latent_reward.probes",
    "ProbeInfo": "latent_reward.probes",
    "ProbeSettings": "latent_reward.probes",
    "ProbeOptions": "latent_reward.probes",
    "DEFAULT_PROBE": "latent_reward.probes",
    "SteeringVector": "latent_reward.generation.steering",
    "steering": "latent_reward.generation.steering",
    "DataSpec": "latent_reward.config",
    "ModelSpec": "latent_reward.config",
    "ExtractConfig": "latent_reward.config",
    "run": "latent_reward.workflows.run",
    "RunConfig": "latent_reward.workflows.run",
    "RunResult": "latent_reward.experiments.run_result",
    "UserError": "latent_reward.errors",
    **{
        name: _API
        for name in (
            "score",
            "steer",
            "generate",
            "compare",
            "conversation",
            "judge",
            "respond",
            "train",
            "verify",
            "capture",
            "steering_vector",
        )
    },
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'latent_reward' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
