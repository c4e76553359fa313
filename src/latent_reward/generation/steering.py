"""Steering as an API (repeng's habit): a direction in residual space with its layer and strength unit, and a context
manager that adds it while the model runs, whatever generates (this package's `generate`, transformers' `generate`,
a plain forward pass). The hooks are the ones the steer experiment uses (`interventions`, `residual_hook`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from latent_reward.errors import UserError
from latent_reward.generation.interventions import Intervention, intervene
from latent_reward.models.architecture import residual_hook
from latent_reward.models.loading import LoadedModel


@dataclass(frozen=True)
class SteeringVector:
    """A unit direction [d_model] at residual index `layer` (0 = embeddings, i = output of block i), and `unit`: the
    norm that a strength of 1 adds (the standard deviation of the states' projection on the direction there, as the
    steer experiment measures strengths; 1.0 when no states were at hand)."""

    direction: np.ndarray
    layer: int
    unit: float = 1.0
    position: str | None = None  # where the probe it came from reads
    model: str | None = None

    def numpy(self, strength: float = 1.0) -> np.ndarray:
        """float32 [d_model]: what steering at `strength` adds to the residual stream."""
        return (strength * self.unit * np.asarray(self.direction, dtype=np.float64)).astype(np.float32)

    def torch(self, strength: float = 1.0, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
        """`numpy(strength)` as a torch tensor."""
        return torch.as_tensor(self.numpy(strength), dtype=dtype, device=device)

    def intervention(
        self, strength: float = 1.0, layer: int | None = None, scope: Literal["generated", "all"] = "generated"
    ) -> Intervention:
        """The Intervention that `generate(..., interventions=...)` takes: this vector at `strength`."""
        return Intervention(self.layer if layer is None else layer, self.numpy(strength), scope=scope)

    def save(self, path: str | Path) -> Path:
        """To a .safetensors file: the direction, with the layer, unit, position and model as metadata."""
        from safetensors.numpy import save_file

        metadata = {
            "layer": str(self.layer),
            "unit": repr(float(self.unit)),
            "position": self.position or "",
            "model": self.model or "",
        }
        save_file({"direction": np.ascontiguousarray(self.direction, dtype=np.float32)}, str(path), metadata=metadata)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """A SteeringVector written by `save`."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as handle:
                metadata, direction = handle.metadata() or {}, handle.get_tensor("direction")
            return cls(
                direction,
                int(metadata["layer"]),
                float(metadata["unit"]),
                metadata.get("position") or None,
                metadata.get("model") or None,
            )
        except (OSError, KeyError, ValueError, SafetensorError) as error:
            raise UserError(f"{path} is not a saved steering vector ({error})") from None


@contextlib.contextmanager
def steering(
    model: LoadedModel | torch.nn.Module,
    vector: SteeringVector,
    strength: float = 1.0,
    layers: Sequence[int] | None = None,
    scope: Literal["all", "generated"] = "all",
) -> Iterator[None]:
    """While the block runs, add `strength` x unit x direction to the residual stream at `vector.layer` (or at each of
    `layers`) in every forward pass of `model`.

    scope "all": every position; "generated": only passes of one new token on a KV cache (the decoding steps of a
    cached `generate`; the prompt's pass is left alone). The hooks are removed on exit, whatever happens.
    """
    module = model.model if isinstance(model, LoadedModel) else model
    item = vector.intervention(strength, scope=scope)
    added = item.tensor(module)

    def change(hidden: torch.Tensor) -> torch.Tensor | None:
        if scope == "generated" and hidden.shape[1] != 1:
            return None
        return intervene(hidden, added, "add")

    handles = []
    try:
        for layer in layers if layers is not None else (vector.layer,):
            handles.append(residual_hook(module, int(layer), change))
        yield
    finally:
        for handle in handles:
            handle.remove()
