"""Where the closed-form ridge fits compute: the CPU, or a GPU for the analysis of a large store.

The analysis reaches the ridge fits from a dozen places (the sweep, the cross-fits and their controls, the fold-seed
spread, prompt-only, the text baselines, trajectories), so the device is set once around it (`analysis_device`)
instead of being passed down every path, as torch's own default-device context does for new tensors. Whatever the
device, the fits take and return numpy arrays on the host; only their arithmetic moves. The principal-component sketch
of wide states (`analysis.sketch`) stays on the CPU: its seeded random start would differ on a GPU, and with it the
cells chosen on it; the fits themselves differ between devices by rounding (which can still decide between two cells
that nearly tie).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch

from latent_reward.errors import UserError

_DEVICE: ContextVar[torch.device | None] = ContextVar("analysis_device", default=None)  # None: the CPU


def fit_device(device: str) -> torch.device:
    """The device a --device name gives the ridge fits: a GPU when it resolves to cuda (auto: cuda when torch sees one;
    under `accelerate launch`, the process's own), else the CPU; a GPU torch cannot see is a UserError. mps stays on
    the CPU: the fits solve their small systems in float64, which mps lacks."""
    from latent_reward.models.devices import check_device, resolve_device

    if check_device(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--analysis-device {device}: torch sees no GPU; choose cpu or auto")
    resolved = resolve_device(device)
    if not resolved.startswith("cuda"):
        return torch.device("cpu")
    chosen = torch.device(resolved)
    if (chosen.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--analysis-device {device}: torch sees {torch.cuda.device_count()} GPU(s); choose cpu")
    return chosen


@contextmanager
def analysis_device(device: str) -> Iterator[torch.device]:
    """Run the ridge fits inside on the device `device` names (`fit_device`); yields that device. On a GPU, float32
    products keep their full precision inside (no TF32, whatever the process set), and the memory the fits cached is
    released after."""
    chosen = fit_device(device)
    token = _DEVICE.set(chosen)
    matmul = torch.backends.cuda.matmul
    # torch 2.9 and later: fp32_precision ("none", "ieee", "tf32"); before, allow_tf32. Put back as it was after.
    setting, full = ("fp32_precision", "ieee") if hasattr(matmul, "fp32_precision") else ("allow_tf32", False)
    before = getattr(matmul, setting)
    if chosen.type == "cuda":
        setattr(matmul, setting, full)
    try:
        yield chosen
    finally:
        _DEVICE.reset(token)
        if chosen.type == "cuda":
            setattr(matmul, setting, before)
            torch.cuda.empty_cache()


def current_device() -> torch.device:
    """The device the ridge fits compute on here (the CPU outside `analysis_device`)."""
    return _DEVICE.get() or torch.device("cpu")


def host(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a numpy array on the host (a view on the CPU, a copy from a GPU)."""
    return tensor.detach().cpu().numpy()
