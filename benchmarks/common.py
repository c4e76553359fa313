"""What the benchmarks share: which model they load (a bundled name, a folder, or random weights of a folder's
shape, for a machine the weights cannot travel to), on which device, and how a result names it."""

from __future__ import annotations

import argparse

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
