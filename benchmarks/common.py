"""What the benchmarks share: which model they load (a bundled name, a folder, or random weights of a folder's
shape, for a machine the weights cannot travel to), on which device, and how a result names it."""

from __future__ import annotations

import argparse
import math
import threading
from pathlib import Path

import torch

from latent_reward.models import load_model
from latent_reward.models.loading import LoadedModel

MODEL = "smollm2-135m-instruct"


def add_model_arguments(parser: argparse.ArgumentParser, dtype: str) -> None:
    parser.add_argument("--model", default=MODEL, help="bundled name or model folder")
    parser.add_argument(
        "--random-init", type=int, default=None, metavar="SEED", help="random weights of the model's shape"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--dtype", default=dtype)


def load(args: argparse.Namespace) -> LoadedModel:
    return load_model(args.model, dtype=args.dtype, device=args.device, random_init_seed=args.random_init)


def describe(args: argparse.Namespace, loaded: LoadedModel) -> str:
    """e.g. 'model smollm2-135m-instruct (bfloat16, trained weights), cpu, 2 threads'."""
    device = loaded.model.device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    weights = "random weights" if args.random_init is not None else "trained weights"
    return f"model {args.model} ({args.dtype}, {weights}), {where}"


class AnonymousPeak:
    """The largest anonymous resident memory (heap, arrays, tensors) seen while the block runs, sampled every
    `interval` seconds from /proc/self/status (Linux; elsewhere `gb` stays NaN). `ru_maxrss` also counts the pages of
    memory-mapped files, a store's among them, which the kernel drops and reads again when memory is short, so on a
    large store it grows with the store; this is what the process itself needs. Hand-written: psutil reads the current
    value only, and a sampler is all that is needed (a spike shorter than `interval` can be missed)."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.gb = float("nan")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> AnonymousPeak:
        self.gb = _anonymous_gb()
        if math.isfinite(self.gb):
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.gb = max(self.gb, _anonymous_gb())  # the last moments too

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.gb = max(self.gb, _anonymous_gb())


_STATUS = "/proc/self/status"


def _anonymous_gb() -> float:
    """The anonymous resident memory now, in GB; NaN where /proc does not say."""
    if not Path(_STATUS).exists():
        return float("nan")
    with open(_STATUS) as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 2**20  # kB
    return float("nan")
