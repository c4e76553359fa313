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

LAUNCH_ENV = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "ACCELERATE_USE_CPU",
)


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


@pytest.fixture
def launched(monkeypatch):
    """Rank 1 of 2 as `accelerate launch` starts it (LOCAL_RANK=1, WORLD_SIZE=2), with accelerate's real PartialState:
    only the process group and the GPUs it would touch are stand-ins (two GPUs when CUDA is patched in)."""
    from accelerate import PartialState

    saved = dict(os.environ)  # accelerate writes the launch variables it derives into the environment
    os.environ.update(
        WORLD_SIZE="2", RANK="1", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", OMP_NUM_THREADS=str(torch.get_num_threads())
    )
    os.environ.pop("ACCELERATE_USE_CPU", None)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *args: 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr("accelerate.state.check_cuda_p2p_ib_support", lambda: True)
    PartialState._reset_state()
    yield
    PartialState._reset_state()
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize(
    "cuda, use_cpu, expected", [(True, False, "cuda:1"), (False, False, "cpu"), (True, True, "cpu")]
)
def test_each_launched_process_takes_its_own_device(cuda, use_cpu, expected, monkeypatch, launched):
    """Under `accelerate launch` auto is the device accelerate gives the process: its own GPU (LOCAL_RANK) with CUDA,
    the CPU without it or under `accelerate launch --cpu`."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if use_cpu:
        os.environ["ACCELERATE_USE_CPU"] = "true"
    assert resolve_device("auto") == expected
    state = devices.distributed_state()
    assert (state.process_index, state.num_processes) == (1, 2)
    assert resolve_device("cpu") == "cpu"  # a named device is not accelerate's to choose


def test_a_single_process_has_no_distributed_state(monkeypatch, one_process):
    assert devices.distributed_state() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert devices.distributed_state() is None


def test_the_distributed_state_exists_before_the_model_is_loaded(tiny_model_dir, monkeypatch, launched):
    """The order that puts every rank on its own GPU: accelerate's state first, then the model moved to its device."""
    from accelerate import PartialState

    events = []
    made = PartialState.__init__

    def init(state, *args, **kwargs):
        events.append("state")
        made(state, *args, **kwargs)

    original = torch.nn.Module.to

    def to(module, *args, **kwargs):
        events.append(f"model to {args[0] if args else kwargs}")
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(PartialState, "__init__", init)
    monkeypatch.setattr(torch.nn.Module, "to", to)
    load_model(str(tiny_model_dir), device="auto")
    assert events == ["state", "model to cpu"]


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


def test_a_random_init_copy_is_spread_by_accelerate_like_loaded_weights(tiny_model_dir):
    whole = ModelSpec(name=str(tiny_model_dir), dtype="float32", device="cpu").load(random_init_seed=3)
    spread = ModelSpec(name=str(tiny_model_dir), dtype="float32", device_map="auto").load(random_init_seed=3)
    # placed by accelerate's planner and dispatch (the map it records), not moved whole to one device
    assert not hasattr(whole.model, "hf_device_map")
    assert set(spread.model.hf_device_map.values()) == {"cpu"}  # no GPU here: the planner's only device
    for a, b in zip(whole.model.parameters(), spread.model.parameters()):
        assert torch.equal(a, b)  # the same seed gives the same weights however they are placed


def test_a_device_torch_cannot_use_is_a_user_error(tiny_model_dir):
    with pytest.raises(UserError, match="cannot move the model to 'cuda:99'"):
        load_model(str(tiny_model_dir), device="cuda:99")


def test_under_accelerate_launch_cuda_is_the_process_own_gpu_and_a_device_map_is_refused(
    tiny_model_dir, monkeypatch, launched
):
    """`--device cuda` with several processes means each its own GPU, as auto does (not every rank on cuda:0); a device
    map would spread every rank's copy over every GPU, so the two together are one clear error."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda") == "cuda:1"
    assert resolve_device("cuda:0") == "cuda:0"  # an explicit index is the user's to choose
    with pytest.raises(UserError, match="device-map"):
        load_model(str(tiny_model_dir), device="auto", device_map="auto")


def test_cpu_bfloat16_instructions_are_read_from_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from latent_reward.models import devices

    real_open = builtins.open
    for flags, expected in (
        ("fpu sse avx2 fma", False),
        ("fpu avx2 avx512f avx512_bf16", True),
        ("fpu amx_bf16", True),
    ):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(
            builtins,
            "open",
            lambda path, *a, info=info, **k: real_open(info if path == "/proc/cpuinfo" else path, *a, **k),
        )
        assert devices.cpu_computes_bfloat16() is expected


def test_a_model_spec_resolves_its_precision_without_making_the_launch_state(monkeypatch, launched):
    """Under `accelerate launch` a ModelSpec (built while parsing options) names its precision from the device kind
    alone: making accelerate's state there would start the process group before the job decides to."""
    from latent_reward.config import ModelSpec
    from latent_reward.models import devices

    def made(*args, **kwargs):
        raise AssertionError("the accelerate state was made to resolve a precision")

    monkeypatch.setattr(devices, "distributed_state", made)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ModelSpec(dtype="auto", device="auto").dtype == "bfloat16"
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    monkeypatch.setattr(devices, "cpu_computes_bfloat16", lambda: False)
    assert ModelSpec(dtype="auto", device="cuda").dtype == "float32"  # launch --cpu: every rank on the CPU
    assert devices.device_kind("cuda:1") == "cuda" and devices.device_kind("mps") == "mps"
