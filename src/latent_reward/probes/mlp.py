"""A nonlinear probe: an MLP trained on the same loop as the SGD probe."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import Field

from latent_reward.probes.base import unit
from latent_reward.probes.settings import TrainConfig
from latent_reward.probes.sgd import SGDSettings, TrainedProbe


class MLPSettings(SGDSettings):
    """The MLP probe's options: the training loop and the network's shape."""

    hidden: int = Field(256, ge=1)
    depth: int = Field(1, ge=1, description="hidden layers")
    dropout: float = Field(0.1, ge=0, lt=1)


class MLPProbe(TrainedProbe):
    """A nonlinear probe: an MLP (GELU hidden layers, dropout) on the z-scored states."""

    kind = "mlp"
    linear = False
    Settings = MLPSettings

    def __init__(
        self, config: TrainConfig | None = None, hidden: int = 256, depth: int = 1, dropout: float = 0.1, **options
    ):
        super().__init__(config, **options)
        self.hidden, self.depth, self.dropout = hidden, depth, dropout

    @classmethod
    def from_settings(cls, settings: MLPSettings) -> MLPProbe:
        """An unfitted MLPProbe with the settings' training loop, hidden width, depth and dropout."""
        return cls(settings.train, hidden=settings.hidden, depth=settings.depth, dropout=settings.dropout)

    def build(self, d_model: int) -> torch.nn.Module:
        """An untrained network mapping [batch, d_model] to [batch, 1], with `depth` hidden layers of width `hidden`."""
        layers: list[torch.nn.Module] = []
        width = d_model
        for _ in range(self.depth):
            layers += [torch.nn.Linear(width, self.hidden), torch.nn.GELU(), torch.nn.Dropout(self.dropout)]
            width = self.hidden
        layers.append(torch.nn.Linear(width, 1))
        return torch.nn.Sequential(*layers)

    @property
    def direction(self) -> np.ndarray:
        """A unit vector [d]: the average input gradient at the training mean (the MLP's best linear summary)."""
        standardizer = self.fitted_standardizer
        x = torch.zeros((1, len(standardizer.mean)), dtype=torch.float32, requires_grad=True)
        network = self.fitted_network.eval()
        network(x).sum().backward()
        if x.grad is None:
            raise RuntimeError("the MLP's backward pass reached no input gradient")
        return unit(x.grad[0].numpy().astype(np.float64) / standardizer.scale)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "hidden": self.hidden, "depth": self.depth, "dropout": self.dropout}

    def _restore(self, tensors, state) -> None:
        self.hidden, self.depth, self.dropout = state["hidden"], state["depth"], state["dropout"]
        super()._restore(tensors, state)
