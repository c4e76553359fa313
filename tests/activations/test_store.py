"""Store integrity: damaged shards are found, named and recomputed; one writer at a time."""

import numpy as np
import pytest

from helpers import cli, synthetic_examples, write_jsonl
from latent_reward.activations import ActivationStore, ExtractConfig, extract
from latent_reward.activations.store import shard_path
from latent_reward.errors import UserError
from latent_reward.io import exclusive

CONFIG = ExtractConfig(positions=("assistant_start", "eot"), shard_size=4)


@pytest.fixture
def store_folder(tiny, tmp_path):
    extract(tiny, synthetic_examples(4, 3), tmp_path / "s", CONFIG, progress=False)
    return tmp_path / "s"


def test_a_truncated_shard_is_named_and_recomputed(tiny, store_folder):
    before = ActivationStore.open(store_folder).array("eot")
    path = shard_path(store_folder, 1)
    path.write_bytes(path.read_bytes()[:-100])  # a copy cut short
    with pytest.raises(UserError, match=r"shard-00001.safetensors is damaged .*run the same extract command"):
        ActivationStore.open(store_folder)
    result = extract(tiny, synthetic_examples(4, 3), store_folder, CONFIG, progress=False)
    assert (result.computed_shards, result.repaired_shards) == (1, 1)
    np.testing.assert_array_equal(ActivationStore.open(store_folder, verify=True).array("eot"), before)


def test_a_corrupted_shard_fails_verification_and_is_recomputed(tiny, store_folder):
    before = ActivationStore.open(store_folder).array("assistant_start")
    path = shard_path(store_folder, 0)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # same size, one byte flipped
    path.write_bytes(bytes(data))
    ActivationStore.open(store_folder)  # the cheap size check passes
    with pytest.raises(UserError, match="checksum mismatch"):
        ActivationStore.open(store_folder, verify=True)
    assert extract(tiny, synthetic_examples(4, 3), store_folder, CONFIG, progress=False).repaired_shards == 1
    np.testing.assert_array_equal(ActivationStore.open(store_folder, verify=True).array("assistant_start"), before)


def test_a_missing_shard_is_recomputed(tiny, store_folder):
    shard_path(store_folder, 1).unlink()
    with pytest.raises(UserError, match="missing"):
        ActivationStore.open(store_folder)
    assert extract(tiny, synthetic_examples(4, 3), store_folder, CONFIG, progress=False).computed_shards == 1


def test_a_second_writer_is_refused(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "a.jsonl", [{"question": f"q{i} the fox", "answer": "paris " * (i + 1), "score": i} for i in range(6)])
    out = tmp_path / "store"
    with exclusive(out, "activation store"):  # another process holds the store
        result = cli("extract", "--model", tiny_model_dir, "--data", data, "--out", out, "--positions", "eot")
    assert result.returncode == 2 and "another process is writing the activation store" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli("extract", "--model", tiny_model_dir, "--data", data, "--out", out, "--positions", "eot").returncode == 0
