"""The probe interface: fit / predict / save / load, the direction in residual space, and the registry.

Every probe kind registers itself by subclassing `Probe` with a `kind` name and its own `Settings` model;
`Probe.create(kind, settings)` builds any of them, `Probe.load(folder)` restores any of them, and
`ProbeOptions` holds one settings object per kind (the sweep's).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from pydantic import ConfigDict, RootModel, SerializeAsAny, model_validator
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from latent_reward.errors import UserError
from latent_reward.io import atomic_path, read_json, write_json
from latent_reward.probes.info import ProbeInfo, from_flat
from latent_reward.probes.module import ProbeModule, linear_core
from latent_reward.probes.settings import ProbeSettings

T = TypeVar("T")

CONSTANT_STD = 1e-8  # a feature whose standard deviation over the fit's rows is at most this is left unscaled


def fitted(value: T | None, probe: Probe) -> T:
    """`value`, one of the parts that fitting or loading `probe` sets; an error when the probe has had neither."""
    if value is None:
        raise RuntimeError(f"the {type(probe).__name__} is used before it was fitted or loaded")
    return value


@dataclass
class Standardizer:
    """Per-feature z-scoring fitted on training rows (residual norms grow ~200x with depth)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """A Standardizer with the per-feature mean and scale of x [n, d] (scale 1 for constant features)."""
        x = np.asarray(x, dtype=np.float64)
        scale = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(scale > CONSTANT_STD, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """float64 [n, d]: x [n, d] z-scored with the fitted mean and scale."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale


class Probe(ABC):
    """Predicts a rating from residual states [n, d_model] at one (layer, position).

    A saved probe is a folder of two files (`save`, `load`):

    - probe.json: {"kind": registry name, "info": provenance, "state": the kind's scalars}. `info` is a `ProbeInfo`
      (probes/info.py): what the sweep records (target, model, model_dtype, chat_template, store, max_tokens, position,
      layer, train_groups, validation_groups, rating_range, group_key_version) and, under `fit`, what the fit chose
      (ridge: alpha_factor; sgd/mlp: config, best_epoch, epochs_run, final_val_loss; pairwise: pairs); the flat dict
      of older probe folders loads into it. `state`: ridge {intercept, alpha_factor}; mean_diff and pairwise
      {slope, intercept, options}; sgd and mlp {config, y_mean, y_scale, d_model} (+ mlp's hidden, depth, dropout).
    - tensors.safetensors: standardizer_mean and standardizer_scale (float64 [d]: the z-scoring of the states), and the
      kind's weights: ridge "weights" [d] (on z-scored states); mean_diff and pairwise "vector" [d] (projection on
      z-scored states, then slope and intercept); sgd and mlp the torch network's state_dict (on z-scored states,
      predicting the z-scored rating: times y_scale plus y_mean).

    `to_torch()` gives the same function as a plain torch module.
    """

    kind: ClassVar[str]
    linear: ClassVar[bool] = True  # a linear function of the states (its direction is exact, not a summary)
    Settings: ClassVar[type[ProbeSettings]] = ProbeSettings  # the kind's own options
    registry: ClassVar[dict[str, type[Probe]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if getattr(cls, "kind", None):
            Probe.registry[cls.kind] = cls

    def __init__(self) -> None:
        self.standardizer: Standardizer | None = None
        self.info = ProbeInfo()  # layer, position, target, prompts, chosen hyperparameters...

    @property
    def fitted_standardizer(self) -> Standardizer:
        """The z-scoring of the states, which fitting or loading sets."""
        return fitted(self.standardizer, self)

    @classmethod
    def create(cls, kind: str, settings: ProbeSettings | None = None) -> Probe:
        """A new, unfitted probe of a registered kind, from its own settings (default: the kind's defaults)."""
        kind_class = probe_class(kind)
        if settings is not None and not isinstance(settings, kind_class.Settings):
            raise UserError(f"the {kind} probe takes {kind_class.Settings.__name__}, not {type(settings).__name__}")
        return kind_class.from_settings(settings or kind_class.Settings())

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Any) -> Probe:
        """A new, unfitted probe of this kind, configured from `settings` (an instance of `cls.Settings`)."""

    @classmethod
    def fit_layers(
        cls, settings: Any, x: np.ndarray, targets: np.ndarray, groups: np.ndarray
    ) -> Sequence[Sequence[Probe]]:
        """Probes for every target column of `targets` [n, T] and every layer of x [n, L, d]: probes[target][layer].

        One fit per cell; kinds that can share work across layers and targets (ridge) override this.
        """
        targets = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
        return [
            [cls.from_settings(settings).fit(x[:, layer], targets[:, t], groups) for layer in range(x.shape[1])]
            for t in range(targets.shape[1])
        ]

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> Probe:
        """Fit on training rows x [n, d], ratings y [n], prompt ids `groups` [n] (for grouped CV / pairs); returns
        self."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted ratings [n] for states x [n, d]."""

    @property
    @abstractmethod
    def direction(self) -> np.ndarray:
        """A unit vector [d] in the model's residual space along which the prediction increases."""

    def to_torch(self, dtype: torch.dtype = torch.float32) -> ProbeModule:
        """The fitted probe as a plain torch module: states [..., d] -> predicted ratings [...], the same function as
        `predict` (in `dtype`), to run on a model's hidden states or to export."""
        core, scale, shift = self._torch_core()
        standardizer = self.fitted_standardizer
        module = ProbeModule(standardizer.mean, standardizer.scale, core, scale, shift)
        return module.to(dtype).eval()

    @abstractmethod
    def _torch_core(self) -> tuple[torch.nn.Module, float, float]:
        """(module on z-scored states [..., d] -> [..., 1], output scale, output shift), so that
        predict = core(z) * scale + shift."""

    # --- persistence: probe.json (kind, info, hyperparameters) + tensors.safetensors -----------
    @abstractmethod
    def _tensors(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _restore(self, tensors: dict[str, np.ndarray], state: dict[str, Any]) -> None: ...

    def _state(self) -> dict[str, Any]:
        return {}

    def save(self, folder: str | Path) -> Path:
        """Save to `folder` (probe.json + tensors.safetensors); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            **self._tensors(),
            "standardizer_mean": self.fitted_standardizer.mean,
            "standardizer_scale": self.fitted_standardizer.scale,
        }
        with atomic_path(folder / "tensors.safetensors") as temporary:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(temporary))
        write_json(folder / "probe.json", {"kind": self.kind, "info": self.info, "state": self._state()})
        return folder

    @staticmethod
    def load(folder: str | Path) -> Probe:
        """The probe saved in `folder` by `save`, whatever its kind."""
        folder = Path(folder)
        if not (folder / "probe.json").exists():
            raise UserError(f"{folder} holds no saved probe (probe.json)")
        meta = read_json(folder / "probe.json", "probe file")
        if not isinstance(meta, dict) or meta.get("kind") not in Probe.registry:
            raise UserError(f"{folder / 'probe.json'} does not describe a probe of a known kind")
        try:
            tensors = load_file(str(folder / "tensors.safetensors"))
        except (OSError, SafetensorError) as error:
            raise UserError(f"cannot read the probe's weights in {folder} ({error})") from None
        cls = Probe.registry[meta["kind"]]
        probe = cls.__new__(cls)
        Probe.__init__(probe)
        try:
            probe.info = ProbeInfo.model_validate(from_flat(meta["info"]))
            probe.standardizer = Standardizer(tensors.pop("standardizer_mean"), tensors.pop("standardizer_scale"))
            probe._restore(tensors, meta["state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise UserError(f"the probe in {folder} is damaged ({type(error).__name__}: {error})") from None
        return probe


def unit(vector: np.ndarray) -> np.ndarray:
    """`vector` scaled to unit length (returned unchanged when it is zero)."""
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


class ProjectionProbe(Probe):
    """A probe that scores by projection on one vector, mapped to the rating's scale by a one-variable
    linear fit on the training rows (so R^2 and MAE mean something; correlations do not depend on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.vector: np.ndarray | None = None
        self.slope, self.intercept = 1.0, 0.0

    @property
    def fitted_vector(self) -> np.ndarray:
        """The projection vector [d] on z-scored states, which fitting or loading sets."""
        return fitted(self.vector, self)

    def _calibrate(self, xs: np.ndarray, y: np.ndarray) -> None:
        projection = xs @ self.fitted_vector
        self.slope, self.intercept = np.polyfit(projection, y, 1) if projection.std() > 0 else (0.0, float(y.mean()))

    def predict(self, x) -> np.ndarray:
        """Predicted ratings float64 [n] for states x [n, d]."""
        return self.slope * (self.fitted_standardizer.transform(x) @ self.fitted_vector) + self.intercept

    @property
    def direction(self) -> np.ndarray:
        """Unit vector [d] in residual space: the projection vector with the standardization undone."""
        return unit(self.fitted_vector / self.fitted_standardizer.scale)

    def _tensors(self) -> dict[str, np.ndarray]:
        return {"vector": self.fitted_vector}

    def _torch_core(self) -> tuple[torch.nn.Module, float, float]:
        return linear_core(self.fitted_vector), float(self.slope), float(self.intercept)

    def _options(self) -> dict[str, Any]:
        """Constructor options to save with the probe."""
        return {}

    def _state(self) -> dict[str, Any]:
        return {"slope": float(self.slope), "intercept": float(self.intercept), "options": self._options()}

    def _restore(self, tensors, state) -> None:
        self.vector, self.slope, self.intercept = tensors["vector"], state["slope"], state["intercept"]
        for name, value in state["options"].items():
            setattr(self, name, value)


def probe_class(kind: str) -> type[Probe]:
    """The registered class of probe kind `kind`."""
    if kind not in Probe.registry:
        raise UserError(f"unknown probe {kind!r}; choose from {', '.join(Probe.registry)}")
    return Probe.registry[kind]


class ProbeOptions(RootModel[dict[str, SerializeAsAny[ProbeSettings]]]):
    """Settings per probe kind, each kind its own model: e.g. `ProbeOptions({"mlp": MLPSettings(hidden=64)})` or, as
    JSON, {"mlp": {"hidden": 64}}. A kind not named gets its defaults (`of`)."""

    model_config = ConfigDict(frozen=True)
    root: dict[str, SerializeAsAny[ProbeSettings]] = {}

    @model_validator(mode="before")
    @classmethod
    def _each_kind_its_own(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if value and set(value) <= set(_FLAT):
            value = _from_flat(value)
        out = {}
        for kind, settings in value.items():
            if kind not in Probe.registry:
                raise ValueError(f"unknown probe {kind!r}; choose from {', '.join(Probe.registry)}")
            wanted = Probe.registry[kind].Settings
            out[kind] = settings if isinstance(settings, wanted) else wanted.model_validate(settings)
        return out

    def of(self, kind: str) -> Any:
        """The settings of probe kind `kind` (its defaults when not given)."""
        return self.root.get(kind) or probe_class(kind).Settings()


# The one flat settings object that run.json files held before each kind had its own: field -> (kind, field).
_FLAT = {
    "alpha_factors": ("ridge", "alpha_factors"),
    "train": ("sgd", "train"),
    "mlp_hidden": ("mlp", "hidden"),
    "mlp_dropout": ("mlp", "dropout"),
    "mean_diff_quantile": ("mean_diff", "quantile"),
    "pairwise_c": ("pairwise", "c"),
}


def _from_flat(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-kind settings from the old flat object (its `train` loop served the MLP as well as the SGD probe)."""
    kinds: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        kind, field = _FLAT[name]
        kinds.setdefault(kind, {})[field] = value
    if "train" in flat:
        kinds.setdefault("mlp", {})["train"] = flat["train"]
    return kinds
