"""Optional dependencies: imported only where they are used, with one clear error naming the extra that installs them.

The core install (transformers, torch, the science stack) runs extraction, probes and reports; `[judge]` adds the
OpenAI client (respond, judge, judge scorers and rewards), `[train]` TRL and PEFT (train), `[gguf]` the GGUF reader
(the bundled models, converted once on first use).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from latent_reward.errors import UserError

EXTRAS = {"openai": "judge", "trl": "train", "peft": "train", "gguf": "gguf"}


def require(module: str) -> ModuleType:
    """The optional dependency `module` (one of EXTRAS), imported; a UserError naming its extra when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name != module:  # installed, but something it imports is broken: not a missing extra
            raise
        extra = EXTRAS[module]
        raise UserError(
            f"{module} is not installed; install the {extra} extra: pip install 'latent-reward[{extra}]'"
        ) from None
