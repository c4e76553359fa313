"""A probe's provenance (`ProbeInfo`): the prompts it may not be scored on, and probe folders and results written
before it was typed (a flat dict with no version)."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from helpers import planted
from latent_reward.errors import UserError
from latent_reward.experiments.reward_model import ScoreResult
from latent_reward.probes import Probe, ProbeInfo, RidgeProbe
from latent_reward.probes.info import from_flat


def test_a_probe_excludes_its_training_and_validation_prompts():
    info = ProbeInfo(train_groups=["a", "b"], validation_groups=["c", "a"])
    assert info.excluded_groups() == {"a", "b", "c"}
    assert ProbeInfo().excluded_groups() == set()
    assert "train_groups" not in info.provenance().model_dump()  # what results record: no prompt lists


def test_a_probe_folder_written_as_a_flat_dict_loads_with_the_same_exclusion(tmp_path):
    x, y, groups, _ = planted(n_groups=20, d=6)
    probe = RidgeProbe().fit(x, y, groups)
    folder = probe.save(tmp_path / "probe")
    meta = json.loads((folder / "probe.json").read_text())
    alpha = meta["info"]["fit"]["alpha_factor"]
    old = {
        "alpha_factor": alpha,
        "target": "rating",
        "model": "m",
        "store": "/stores/s",
        "model_dtype": "float32",
        "chat_template": "fallback",
        "max_tokens": 512,
        "group_key_version": 2,
        "train_groups": ["g1", "g2"],
        "validation_groups": ["g3"],
        "rating_range": [0.1, 0.9],
        "position": "eot",
        "layer": 2,
    }  # as sweep wrote it
    (folder / "probe.json").write_text(json.dumps({**meta, "info": old}))
    loaded = Probe.load(folder)
    assert loaded.info.excluded_groups() == {"g1", "g2", "g3"}
    assert loaded.info.cell() == ("eot", 2) and loaded.info.rating_range == (0.1, 0.9)
    assert (loaded.info.model, loaded.info.store, loaded.info.chat_template, loaded.info.max_tokens) == (
        "m",
        "/stores/s",
        "fallback",
        512,
    )
    assert loaded.info.fit == {"alpha_factor": alpha} and loaded.info.version == 2
    np.testing.assert_allclose(loaded.predict(x), probe.predict(x))
    again = Probe.load(loaded.save(tmp_path / "again"))  # saved again: the typed form, the same provenance
    assert again.info == loaded.info
    assert json.loads((tmp_path / "again" / "probe.json").read_text())["info"]["version"] == 2


def test_a_result_written_with_the_flat_probe_dict_loads():
    flat = {"target": "rating", "model": "m", "position": "eot", "layer": 2, "max_tokens": 512, "alpha_factor": 1.0}
    result = ScoreResult.model_validate({"data": "pairs.jsonl", "examples": 4, "excluded_prompts": 1, "probe": flat})
    assert (result.probe.position, result.probe.layer, result.probe.model) == ("eot", 2, "m")
    assert result.probe.fit == {"alpha_factor": 1.0}


def test_an_unknown_field_is_refused_unless_it_comes_from_a_flat_saved_dict():
    with pytest.raises(ValidationError):
        ProbeInfo(postion="eot")
    with pytest.raises(ValidationError):
        ProbeInfo.model_validate({"version": 2, "postion": "eot"})
    assert ProbeInfo.model_validate(from_flat({"postion": "eot"})).fit == {"postion": "eot"}  # version 1 kept it
    with pytest.raises(UserError, match="position and layer"):
        ProbeInfo(layer=3).cell()
