"""Where models run: --device names, "auto" with and without a GPU, each accelerate process on its own device,
and the loader placing the model where it is told."""

import os

import pytest
import torch

from latent_reward.config import ModelSpec
from latent_reward.errors import UserError
from latent_reward.models import devices
from latent_reward.models.devices import check_device, resolve_device
from latent_reward.models.loading import load_model

LAUNCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU")


@pytest.fixture
def one_process(monkeypatch):
    """No `accelerate launch` around this test, whatever the environment running it says."""
    for name in LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("cuda, expected", [(False, "cpu"), (True, "cuda")])
def test_auto_is_cuda_when_torch_sees_one_else_cpu(cuda, expected, monkeypatch, one_process):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device("auto") == expected
    assert resolve_device() == expected


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:3", "mps"])
def test_named_devices_are_kept_as_given(name, monkeypatch, one_process):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(name) == name


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", "cpu,cuda", ""])
def test_unknown_device_names_are_a_user_error(name):
    with pytest.raises(UserError, match="unknown device"):
        check_device(name)
    with pytest.raises(UserError, match="unknown device"):
        ModelSpec(device=name)


class FakeState:
    """What accelerate's PartialState is asked for; records how it was made."""

    made: list[dict] = []

    def __init__(self, cpu: bool = False):
        FakeState.made.append({"cpu": cpu})
        self.device = torch.device("cpu") if cpu else torch.device("cuda", int(os.environ["LOCAL_RANK"]))


@pytest.mark.parametrize("cuda, use_cpu, expected", [(True, None, "cuda:1"), (False, None, "cpu"), (True, "true", "cpu")])
def test_each_launched_process_takes_its_own_device(cuda, use_cpu, expected, monkeypatch, one_process):
    """Under `accelerate launch` (WORLD_SIZE > 1) auto is the device accelerate gives the process: its own GPU
    (LOCAL_RANK) with CUDA, the CPU without it or under `accelerate launch --cpu`."""
    import accelerate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(accelerate, "PartialState", FakeState)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    if use_cpu:
        monkeypatch.setenv("ACCELERATE_USE_CPU", use_cpu)
    FakeState.made.clear()
    assert resolve_device("auto") == expected
    assert FakeState.made == [{"cpu": expected == "cpu"}]
    assert resolve_device("cpu") == "cpu" and len(FakeState.made) == 1  # a named device is not accelerate's to choose


def test_a_single_process_has_no_distributed_state(monkeypatch, one_process):
    assert devices.distributed_state() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert devices.distributed_state() is None


def test_the_distributed_state_exists_before_the_model_is_loaded(tiny_model_dir, monkeypatch, one_process):
    """The order that puts every rank on its own GPU: the state first, then the model moved to its device."""
    import accelerate

    events = []

    class Recording(FakeState):
        def __init__(self, cpu: bool = False):
            events.append("state")
            super().__init__(cpu)

    monkeypatch.setattr(accelerate, "PartialState", Recording)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    original = torch.nn.Module.to

    def to(module, *args, **kwargs):
        events.append(f"model to {args[0] if args else kwargs}")
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", to)
    load_model(str(tiny_model_dir), device="auto")
    assert events[0] == "state" and events[1:] == ["model to cpu"]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_the_loader_puts_the_model_on_the_device(device, tiny_model_dir, monkeypatch, one_process):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = ModelSpec(name=str(tiny_model_dir), dtype="float32", device=device).load()
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    random = ModelSpec(name=str(tiny_model_dir), dtype="float32", device=device).load(random_init_seed=1)
    assert {p.device.type for p in random.model.parameters()} == {"cpu"}


def test_a_device_map_goes_to_transformers_and_the_model_stays_where_it_put_it(tiny_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    asked, moved = [], []
    original_load, original_to = AutoModelForCausalLM.from_pretrained, torch.nn.Module.to

    def from_pretrained(*args, **kwargs):
        asked.append(kwargs.get("device_map"))
        return original_load(*args, **kwargs)

    def to(module, *args, **kwargs):
        moved.append(args)
        return original_to(module, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    ModelSpec(name=str(tiny_model_dir), dtype="float32", device_map="auto").load()
    monkeypatch.setattr(torch.nn.Module, "to", to)
    ModelSpec(name=str(tiny_model_dir), dtype="float32", device="cpu", device_map="auto").load()
    assert asked == ["auto", "auto"] and moved == []


def test_a_device_torch_cannot_use_is_a_user_error(tiny_model_dir):
    with pytest.raises(UserError, match="cannot move the model to 'cuda:99'"):
        load_model(str(tiny_model_dir), device="cuda:99")
