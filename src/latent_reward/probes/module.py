"""A fitted probe as a plain torch module (`Probe.to_torch()`), for running it on hidden states or exporting it."""

from __future__ import annotations

import numpy as np
import torch


class ProbeModule(torch.nn.Module):
    """states [..., d] -> predicted ratings [...]: z-score with the probe's standardizer, apply the kind's `core`
    (z [..., d] -> [..., 1]), then `* out_scale + out_shift` (the rating's scale)."""

    # buffers (registered in __init__), declared so that reading them is typed as a tensor
    mean: torch.Tensor
    scale: torch.Tensor
    out_scale: torch.Tensor
    out_shift: torch.Tensor

    def __init__(self, mean: np.ndarray, scale: np.ndarray, core: torch.nn.Module, out_scale: float, out_shift: float):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=np.float64)))
        self.register_buffer("scale", torch.as_tensor(np.asarray(scale, dtype=np.float64)))
        self.register_buffer("out_scale", torch.tensor(float(out_scale), dtype=torch.float64))
        self.register_buffer("out_shift", torch.tensor(float(out_shift), dtype=torch.float64))
        self.core = core

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        z = (states.to(self.mean.dtype) - self.mean) / self.scale
        return self.core(z).squeeze(-1) * self.out_scale + self.out_shift


def linear_core(weights: np.ndarray, bias: float = 0.0) -> torch.nn.Linear:
    """A Linear layer d -> 1 with the given weights [d] and bias."""
    layer = torch.nn.Linear(len(weights), 1, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(np.asarray(weights, dtype=np.float64))[None])
        layer.bias.fill_(float(bias))
    return layer
