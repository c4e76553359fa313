"""A model split over devices (a device map), simulated on the CPU: the hooks see residual states that say they live
on another device, and any operation that mixes such a state with a tensor not moved there fails, as it would on two
real devices. Extraction must then read exactly what it reads from the model on one device."""

import types

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import latent_reward.activations.forward as forward
from helpers import synthetic_examples
from latent_reward.activations import ExtractConfig, extract

ELSEWHERE = torch.device("cuda", 1)  # a device this machine need not have: nothing is ever placed on it


class Elsewhere(torch.Tensor):
    """A CPU tensor standing for one on ELSEWHERE (a block of a split model)."""

    @property
    def device(self) -> torch.device:
        return ELSEWHERE


def _target(args, kwargs) -> torch.device | None:
    for value in (*args[1:], kwargs.get("device")):
        if isinstance(value, (str, torch.device)):
            return torch.device(value)
    return None


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class SplitDevices(TorchFunctionMode):
    """`.to(ELSEWHERE)` marks a tensor as moved there; `.to(cpu)` / `.cpu()` brings it back; any other operation on
    a mix of marked and unmarked tensors (scalars aside, as in torch) raises, and counts the mixes it saw."""

    def __init__(self):
        super().__init__()
        self.moved = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.to and _target(args, kwargs) == ELSEWHERE:
            self.moved += 1
            dtype = next((v for v in (*args[1:], kwargs.get("dtype")) if isinstance(v, torch.dtype)), None)
            return args[0].as_subclass(torch.Tensor).to(dtype=dtype or args[0].dtype).as_subclass(Elsewhere)
        if isinstance(args[0] if args else None, Elsewhere) and (
            func is torch.Tensor.cpu or (func is torch.Tensor.to and _target(args, kwargs) == torch.device("cpu"))
        ):
            return args[0].as_subclass(torch.Tensor)
        placed = {isinstance(t, Elsewhere) for t in _tensors((args, kwargs)) if t.dim() > 0}
        if len(placed) > 1:
            raise RuntimeError(f"{func.__name__} mixes a tensor on {ELSEWHERE} with one on the CPU")
        return func(*args, **kwargs)


@pytest.mark.parametrize("layers", [None, (0, 2)])  # every block, and a read that stops after block 2 of 3
def test_extraction_reads_each_block_on_its_own_device(tiny, tmp_path, monkeypatch, layers):
    config = ExtractConfig(
        positions=("user_end", "assistant_start", "response_last", "eot", "response_mean", "response_tokens"),
        layers=layers,
        token_layers=(1, 3) if layers is None else (1,),
        batch_tokens=200,
        shard_size=6,
    )
    examples = synthetic_examples()
    whole = extract(tiny, examples, tmp_path / "one-device", config, progress=False).store
    hook = forward.residual_hook
    monkeypatch.setattr(
        forward,
        "residual_hook",
        lambda model, layer, function: hook(model, layer, lambda hidden: function(hidden.as_subclass(Elsewhere))),
    )
    mode = SplitDevices()
    with mode:
        split = extract(tiny, examples, tmp_path / "split", config, progress=False).store
    assert mode.moved > 0  # the request tensors went to the blocks' device
    for position in config.positions[:-1]:
        np.testing.assert_array_equal(split.array(position), whole.array(position))
    for index in range(len(examples)):
        np.testing.assert_array_equal(split.token_states(index), whole.token_states(index))


def test_cache_rows_are_selected_on_each_layer_s_device():
    keys = torch.arange(24.0).reshape(4, 1, 3, 2)
    near = types.SimpleNamespace(keys=keys, values=keys + 100)
    far = types.SimpleNamespace(keys=keys.as_subclass(Elsewhere), values=(keys + 100).as_subclass(Elsewhere))
    cache = types.SimpleNamespace(layers=[near, far])
    rows = torch.tensor([2, 2, 0])
    with SplitDevices():
        selected = forward._select_rows(cache, rows)
        on_cpu = [(layer.keys.cpu(), layer.values.cpu()) for layer in selected.layers]
    for keys_read, values_read in on_cpu:
        torch.testing.assert_close(keys_read, keys[rows])
        torch.testing.assert_close(values_read, keys[rows] + 100)
    assert cache.layers == [near, far]  # the original cache keeps its rows
