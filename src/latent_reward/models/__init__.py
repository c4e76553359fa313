"""Model loading (bundled offline models, Hub ids, local folders) and chat rendering with spans."""

from latent_reward.models.bundled import BUNDLED, DEFAULT_MODEL, is_installed
from latent_reward.models.chat import FALLBACK_CHAT_TEMPLATE, RenderedExample, TokenSpans, render_example
from latent_reward.models.loading import LoadedModel, ModelInfo, load_model

__all__ = [
    "BUNDLED",
    "DEFAULT_MODEL",
    "FALLBACK_CHAT_TEMPLATE",
    "LoadedModel",
    "ModelInfo",
    "RenderedExample",
    "TokenSpans",
    "is_installed",
    "load_model",
    "render_example",
]
