"""Probes trained with minibatches (the seed's SGD probe, and the MLP on the same loop).

Options: batch size, learning rate, weight decay, optimizer, learning-rate schedule (constant,
linear warmup + cosine, one-cycle, reduce-on-plateau), epochs, early stopping on an inner split of
the training prompts (never on the validation prompts that later choose between cells). Targets are
z-scored on the training rows; predictions are returned on the rating's scale.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from latent_reward.data.splits import inner_split
from latent_reward.probes.base import Probe, Standardizer, fitted, unit
from latent_reward.probes.settings import ProbeSettings, TrainConfig


class SGDSettings(ProbeSettings):
    """The SGD probe's options: its minibatch training loop."""

    train: TrainConfig = TrainConfig()


def _scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    if config.schedule == "warmup_cosine":
        warmup = max(1, int(config.warmup_fraction * total))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def train_regressor(
    network: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    config: TrainConfig,
) -> dict[str, Any]:
    """Minibatch MSE training with early stopping on the held-out rows `x_val` (if given).

    Returns a history: train/validation loss per epoch, the best epoch, and the epochs run.
    The network keeps the weights of its best validation epoch.
    """
    generator = torch.Generator().manual_seed(config.seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    validation: tuple[torch.Tensor, torch.Tensor] | None = None
    if x_val is not None and len(x_val) > 0:
        if y_val is None:
            raise ValueError("the held-out rows need their targets")
        validation = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.float32)
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(network.parameters(), lr=config.lr, weight_decay=config.weight_decay, momentum=0.9)
    steps_per_epoch = math.ceil(len(xt) / config.batch_size)
    scheduler = _scheduler(optimizer, config, steps_per_epoch)
    history: dict[str, Any] = {"train_loss": [], "val_loss": []}
    best_loss, best_epoch, stale = float("inf"), 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(xt), config.batch_size):
            rows = order[start : start + config.batch_size]
            loss = torch.nn.functional.mse_loss(network(xt[rows]).squeeze(-1), yt[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if config.schedule != "plateau":
                scheduler.step()
            total += loss.item() * len(rows)
        history["train_loss"].append(total / len(xt))
        network.eval()
        with torch.no_grad():
            monitored = (
                torch.nn.functional.mse_loss(network(validation[0]).squeeze(-1), validation[1]).item()
                if validation is not None
                else history["train_loss"][-1]
            )
        history["val_loss"].append(monitored)
        if config.schedule == "plateau":
            scheduler.step(monitored)
        if monitored < best_loss - 1e-6:
            best_loss, best_epoch, stale = monitored, epoch, 0
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is None:
        raise RuntimeError(f"the loss was not finite in any of {len(history['val_loss'])} epochs: no weights to keep")
    network.load_state_dict(best_state)
    history.update(best_epoch=best_epoch, epochs_run=len(history["train_loss"]))
    return history


class TrainedProbe(Probe):
    """Shared by the SGD linear probe and the MLP: z-scored inputs and targets, one training loop."""

    def __init__(self, config: TrainConfig | None = None, **options):
        super().__init__()
        self.config = config or TrainConfig(**options)
        self.network: torch.nn.Module | None = None
        self.y_mean, self.y_scale = 0.0, 1.0

    @property
    def fitted_network(self) -> torch.nn.Module:
        """The trained network (on z-scored states, predicting the z-scored rating), which fitting or loading sets."""
        return fitted(self.network, self)

    def build(self, d_model: int) -> torch.nn.Module:
        """The untrained network mapping [batch, d_model] to [batch, 1]; each subclass defines it."""
        raise NotImplementedError

    def fit(self, x, y, groups=None) -> TrainedProbe:
        """Train on x, y; early stopping watches an inner split of the training prompts (`groups`;
        without groups, of the rows)."""
        torch.manual_seed(self.config.seed)
        x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
        held = inner_split(
            np.asarray(groups) if groups is not None else np.arange(len(y)).astype(str),
            self.config.inner_val_fraction,
            self.config.seed,
        )
        self.standardizer = Standardizer.fit(x[~held])
        self.y_mean, self.y_scale = float(y[~held].mean()), float(y[~held].std() or 1.0)
        self.network = self.build(x.shape[1])
        xs, ys = self.fitted_standardizer.transform(x), (y - self.y_mean) / self.y_scale
        history = train_regressor(self.network, xs[~held], ys[~held], xs[held], ys[held], self.config)
        self.info.fit.update(
            config=self.config.model_dump(),
            best_epoch=history["best_epoch"],
            epochs_run=history["epochs_run"],
            final_val_loss=min(history["val_loss"]),
        )
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted ratings float64 [n] for states x [n, d], on the rating's scale."""
        network = self.fitted_network.eval()
        with torch.no_grad():
            z = network(torch.as_tensor(self.fitted_standardizer.transform(x), dtype=torch.float32)).squeeze(-1).numpy()
        return z.astype(np.float64) * self.y_scale + self.y_mean

    def _tensors(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.fitted_network.state_dict().items()}

    def _torch_core(self) -> tuple[torch.nn.Module, float, float]:
        return copy.deepcopy(self.fitted_network).eval(), self.y_scale, self.y_mean

    def _state(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "y_mean": self.y_mean,
            "y_scale": self.y_scale,
            "d_model": int(self.fitted_standardizer.mean.shape[0]),
        }

    def _restore(self, tensors, state) -> None:
        self.config = TrainConfig(**state["config"])
        self.y_mean, self.y_scale = state["y_mean"], state["y_scale"]
        self.network = self.build(state["d_model"])
        self.network.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()})


class SGDProbe(TrainedProbe):
    """A linear probe trained with minibatches."""

    kind = "sgd"
    Settings = SGDSettings

    @classmethod
    def from_settings(cls, settings: SGDSettings) -> SGDProbe:
        """An unfitted SGDProbe with the settings' training loop."""
        return cls(settings.train)

    def build(self, d_model: int) -> torch.nn.Module:
        """An untrained linear layer mapping [batch, d_model] to [batch, 1]."""
        return torch.nn.Linear(d_model, 1)

    @property
    def direction(self) -> np.ndarray:
        """Unit vector [d] in residual space along the layer's weights, with the standardization undone."""
        layer = self.fitted_network
        if not isinstance(layer, torch.nn.Linear):
            raise TypeError(f"the SGD probe's network is a linear layer, not {type(layer).__name__}")
        return unit(layer.weight.detach().numpy()[0].astype(np.float64) / self.fitted_standardizer.scale)
