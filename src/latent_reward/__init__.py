"""latent-reward: ask a chat model what reward it expects, by probing its residual stream."""

__version__ = "0.1.0"
