"""Residual-stream extraction at named positions, and the on-disk ActivationStore."""

from latent_reward.activations.extract import ExtractResult, extract
from latent_reward.activations.store import ActivationStore
from latent_reward.config import ExtractConfig
from latent_reward.positions import POSITIONS, TOKEN_POSITION, parse_layers, parse_positions

__all__ = [
    "POSITIONS",
    "TOKEN_POSITION",
    "ActivationStore",
    "ExtractConfig",
    "ExtractResult",
    "extract",
    "parse_layers",
    "parse_positions",
]
