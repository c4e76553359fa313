"""Where a model runs: `--device` names checked and "auto" resolved, in one place.

"auto" is cuda when torch sees one, else cpu; under `accelerate launch` with several processes it is the
device accelerate gives the process (cuda:LOCAL_RANK on GPUs, cpu otherwise), so that every rank loads its
model onto its own GPU. The accelerate state is made here, before any model is loaded.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from latent_reward.errors import UserError

if TYPE_CHECKING:
    from accelerate import PartialState

AUTO = "auto"
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICE_HELP = (
    "auto (cuda if torch sees one, else cpu; each process its own GPU under accelerate launch), "
    "cpu, cuda, cuda:N or mps"
)


def check_device(device: str) -> str:
    """`device` if it is one of the names --device takes, else a UserError."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise UserError(f"unknown device {device!r}; choose {DEVICE_HELP}")
    return device


def distributed_state() -> PartialState | None:
    """accelerate's process state under `accelerate launch` with several processes (made on first call), else None.

    Without a GPU (or under `accelerate launch --cpu`) the processes share the CPU (the gloo backend)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def resolve_device(device: str = AUTO) -> str:
    """The torch device `device` names: "auto" becomes this process's device (see the module's docstring); under
    `accelerate launch` with several processes, "cuda" does too (each process its own GPU)."""
    if check_device(device) not in (AUTO, "cuda"):
        return device
    state = distributed_state()
    if state is not None:
        return "cpu" if state.device.type == "cpu" else str(state.device)
    if device == "cuda":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


AUTO_DTYPE = "auto"


def cpu_computes_bfloat16() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX). Without them torch's bfloat16 matmuls
    take a slow path: 0.33 GFLOP/s against float32's 74 on one core of an AVX2-only AMD EPYC here."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:  # not Linux: assume no such instructions (float32 is the safe choice on a CPU)
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str = AUTO) -> str:
    """The precision `dtype` names: "auto" is bfloat16 on a GPU and on a CPU that computes it natively, float32
    elsewhere (a CPU without bfloat16 instructions, mps)."""
    if dtype != AUTO_DTYPE:
        return dtype
    kind = device_kind(device)
    if kind == "cuda":
        return "bfloat16"
    return "bfloat16" if kind == "cpu" and cpu_computes_bfloat16() else "float32"


def device_kind(device: str = AUTO) -> str:
    """cuda, cpu or mps: the kind of device `resolve_device` would give, read from the environment without making
    accelerate's process state (a config resolving its precision must not start the launch's process group early)."""
    if check_device(device) not in (AUTO, "cuda"):
        return device.split(":")[0]
    import torch

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if launched:
        from accelerate.utils import parse_flag_from_env

        if parse_flag_from_env("ACCELERATE_USE_CPU"):
            return "cpu"  # accelerate launch --cpu: every rank on the CPU whatever the device named
    if device == "cuda" and not launched:
        return "cuda"
    return "cuda" if torch.cuda.is_available() else "cpu"
