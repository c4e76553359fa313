"""Where latent-reward keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$LATENT_REWARD_CACHE, else $XDG_CACHE_HOME/latent-reward, else ~/.cache/latent-reward."""
    explicit = os.environ.get("LATENT_REWARD_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latent-reward"
