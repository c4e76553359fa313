"""`run` loads each model once per process: the random-init copy, then the real model, which both extraction and
the trajectories use (and neither when the stores are reused and no trajectory is asked for)."""

import dataclasses

import latent_reward.models.loading as loading
import latent_reward.workflows.run as run_workflow
from helpers import tiny_loaded, write_jsonl
from latent_reward.activations.store import ActivationStore
from latent_reward.config import DataSpec, ExtractConfig, ModelSpec
from latent_reward.workflows.run import RunConfig


def test_run_loads_each_model_once(tmp_path, monkeypatch):
    real, copy = tiny_loaded(), tiny_loaded(seed=5)
    real = dataclasses.replace(real, info=dataclasses.replace(real.info, name="tiny"))
    copy = dataclasses.replace(copy, info=dataclasses.replace(copy.info, name="tiny", random_init_seed=0))
    loads, analysed = [], []

    def load_model(name, device="cpu", dtype="float32", random_init_seed=None, **kwargs):
        loads.append(random_init_seed)
        return real if random_init_seed is None else copy

    def analyse(store, random_store, readout, out, config, skipped, folder, trajectory_model, *args, **kwargs):
        analysed.append(trajectory_model)
        return {}, {}  # no result, no files

    monkeypatch.setattr(loading, "load_model", load_model)
    monkeypatch.setattr(run_workflow, "analyse", analyse)
    records = [{"question": f"q{i // 2} the fox", "answer": "paris " * (i + 1), "score": i} for i in range(8)]
    data = write_jsonl(tmp_path / "a.jsonl", records)
    config = RunConfig(
        data=DataSpec(source=str(data)),
        model=ModelSpec(name="tiny", dtype="float32"),
        extract=ExtractConfig(positions=("eot",), max_tokens=64),
        out=tmp_path / "run",
    )
    run_workflow.run(config, progress=False)
    assert (
        loads == [0, None] and analysed[0] is real
    )  # the copy first (gone before the real model comes), the real one once
    # by default the copy reads every layer, as the real model does
    assert ActivationStore.open(tmp_path / "run" / "store-random-init").layers == [0, 1, 2, 3]
    assert ActivationStore.open(tmp_path / "run" / "store").layers == [0, 1, 2, 3]
    half = config.model_copy(update={"random_init_depth": 0.5, "out": tmp_path / "half", "trajectory": False})
    run_workflow.run(half, progress=False)  # residual indices 0..ceil(0.5 x 3) for the copy only
    assert ActivationStore.open(tmp_path / "half" / "store-random-init").layers == [0, 1, 2]
    assert ActivationStore.open(tmp_path / "half" / "store").layers == [0, 1, 2, 3]
    loads.clear()
    run_workflow.run(config, progress=False)
    assert loads == [None] and analysed[-1] is real  # stores reused: the real model for the trajectories only
    loads.clear()
    run_workflow.run(config.model_copy(update={"trajectory": False}), progress=False)
    assert loads == [] and analysed[-1] is None
