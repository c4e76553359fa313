"""Changes to the residual stream while a model runs: adding a vector, or projecting a direction out. The one place
their arithmetic lives; generation (`batched`), the teacher-forced read-back and the steering context manager
(`steering`) register them through `models.architecture.residual_hook`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class Intervention:
    """A change to the residual stream at residual index `layer` while generating.

    kind "add": hidden += vector (`vector` already scaled); kind "ablate": the component along `vector`
    (normalized here) is projected out. scope "generated": only the generated tokens' positions (the
    prompt pass is left alone); "all": every position, the prompt included.
    """

    layer: int
    vector: np.ndarray
    kind: Literal["add", "ablate"] = "add"
    scope: Literal["generated", "all"] = "generated"

    def tensor(self, model) -> torch.Tensor:
        """The vector in the model's dtype on its first parameter's device (unit length for "ablate")."""
        parameter = next(model.parameters())
        values = np.asarray(self.vector, dtype=np.float32)
        vector = torch.as_tensor(values, dtype=parameter.dtype, device=parameter.device)
        return vector / vector.norm() if self.kind == "ablate" else vector


def intervene(hidden: torch.Tensor, vector: torch.Tensor, kind: str, where: torch.Tensor | None = None) -> torch.Tensor:
    """`hidden` [batch, tokens, d] changed by `vector` [d] (added, or its direction projected out), at every position
    or where `where` [batch, tokens] is 1."""
    vector = vector.to(hidden.device)  # the layer's device (a device map); no copy on a single device
    weight = 1 if where is None else where.to(device=hidden.device, dtype=hidden.dtype)[..., None]
    if kind == "add":
        return hidden + weight * vector
    return hidden - weight * (hidden @ vector)[..., None] * vector
