"""The probe interface: fit / predict / save / load, and the direction in residual space."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file

from latent_reward.activations.store import atomic_write_text
from latent_reward.errors import UserError


@dataclass
class Standardizer:
    """Per-feature z-scoring fitted on training rows (residual norms grow ~200x with depth)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, dtype=np.float64)
        scale = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(scale > 1e-8, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale


class Probe(ABC):
    """Predicts a rating from residual states [n, d_model] at one (layer, position)."""

    kind: ClassVar[str]
    registry: ClassVar[dict[str, type[Probe]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls, "kind", None):
            Probe.registry[cls.kind] = cls

    def __init__(self) -> None:
        self.standardizer: Standardizer | None = None
        self.info: dict[str, Any] = {}  # layer, position, target, chosen hyperparameters...

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            x_val: np.ndarray | None = None, y_val: np.ndarray | None = None) -> Probe: ...

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray: ...

    @property
    @abstractmethod
    def direction(self) -> np.ndarray:
        """A unit vector in the model's residual space along which the prediction increases."""

    # --- persistence: probe.json (kind, info, hyperparameters) + tensors.safetensors -----------
    @abstractmethod
    def _tensors(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _restore(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None: ...

    def _state(self) -> dict[str, Any]:
        return {}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {**self._tensors(), "standardizer_mean": self.standardizer.mean, "standardizer_scale": self.standardizer.scale}
        temporary = folder / "tensors.safetensors.tmp"
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(temporary))
        temporary.replace(folder / "tensors.safetensors")
        atomic_write_text(folder / "probe.json", json.dumps({"kind": self.kind, "info": self.info, "state": self._state()}, indent=1))
        return folder

    @staticmethod
    def load(folder: str | Path) -> Probe:
        folder = Path(folder)
        if not (folder / "probe.json").exists():
            raise UserError(f"{folder} holds no saved probe (probe.json)")
        meta = json.loads((folder / "probe.json").read_text())
        tensors = load_file(str(folder / "tensors.safetensors"))
        probe = Probe.registry[meta["kind"]].__new__(Probe.registry[meta["kind"]])
        Probe.__init__(probe)
        probe.info = meta["info"]
        probe.standardizer = Standardizer(tensors.pop("standardizer_mean"), tensors.pop("standardizer_scale"))
        probe._restore(tensors, meta["state"])
        return probe


def unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


class ProjectionProbe(Probe):
    """A probe that scores by projection on one vector, mapped to the rating's scale by a one-variable
    linear fit on the training rows (so R^2 and MAE mean something; correlations do not depend on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.vector: np.ndarray | None = None
        self.slope, self.intercept = 1.0, 0.0

    def _calibrate(self, xs: np.ndarray, y: np.ndarray) -> None:
        projection = xs @ self.vector
        self.slope, self.intercept = np.polyfit(projection, y, 1) if projection.std() > 0 else (0.0, float(y.mean()))

    def predict(self, x) -> np.ndarray:
        return self.slope * (self.standardizer.transform(x) @ self.vector) + self.intercept

    @property
    def direction(self) -> np.ndarray:
        return unit(self.vector / self.standardizer.scale)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"vector": self.vector}

    def _options(self) -> dict[str, Any]:
        """Constructor options to save with the probe."""
        return {}

    def _state(self) -> dict[str, Any]:
        return {"slope": float(self.slope), "intercept": float(self.intercept), "options": self._options()}

    def _restore(self, tensors, state) -> None:
        self.vector, self.slope, self.intercept = tensors["vector"], state["slope"], state["intercept"]
        for name, value in state["options"].items():
            setattr(self, name, value)
