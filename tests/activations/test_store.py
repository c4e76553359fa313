"""Store integrity: damaged shards are found, named and recomputed; one writer at a time."""

import json

import numpy as np
import pytest

from helpers import cli, synthetic_examples, write_jsonl
from latent_reward.activations import ActivationStore, ExtractConfig, extract
from latent_reward.activations import store as store_format
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
    data = write_jsonl(
        tmp_path / "a.jsonl",
        [{"question": f"q{i} the fox", "answer": "paris " * (i + 1), "score": i} for i in range(6)],
    )
    out = tmp_path / "store"
    with exclusive(out, "activation store"):  # another process holds the store
        result = cli("extract", "--model", tiny_model_dir, "--data", data, "--out", out, "--positions", "eot")
    assert result.returncode == 2 and "another process is writing the activation store" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli("extract", "--model", tiny_model_dir, "--data", data, "--out", out, "--positions", "eot").returncode == 0


EXTRACTED = {
    "name": "tiny",
    "source": "local",
    "identity": "/models/tiny",
    "architecture": "LlamaForCausalLM",
    "n_layers": 3,
    "d_model": 8,
    "vocab_size": 100,
    "chat_template": "fallback",
    "dtype": "float32",
    "random_init_seed": None,
    "post_training": ["planted:train"],
}
FROM_ARRAYS = {"name": "arrays", "n_layers": 3, "d_model": 8}


@pytest.mark.parametrize("model", [EXTRACTED, FROM_ARRAYS], ids=["extracted", "from arrays"])
def test_a_manifest_written_as_a_plain_dict_opens_with_typed_fields(model, tmp_path):
    """A store whose manifest.json was written before the manifest was typed (as extract and from_arrays wrote it)."""
    examples = synthetic_examples(2, 2)
    states = np.random.default_rng(0).normal(size=(len(examples), 4, 8)).astype(np.float16)
    (tmp_path / store_format.SHARDS).mkdir()
    store_format.write_shard(
        tmp_path,
        0,
        {"eot": states, "example_index": np.arange(len(examples)), "truncated": np.zeros(len(examples), bool)},
    )
    store_format.write_examples(tmp_path, examples)
    record = json.loads(shard_path(tmp_path, 0).with_suffix(".json").read_text())
    extracted = model is EXTRACTED
    manifest = {
        "format": "latent-reward activation store",
        "format_version": 2,
        "status": "complete",
        "fingerprint": {
            "model": model["name"],
            "random_init_seed": None,
            "dtype": "float32",
            "tokenization": 3,
            "data": "0123abcd",
            "n_examples": len(examples),
            "max_tokens": 512,
        },
        "data_source": "data.jsonl",
        "model": model,
        "positions": ["eot"],
        "layers": [0, 1, 2, 3],
        "token_layers": [],
        "residual_convention": "index 0 = input of the first block",
        "dtype": "float16",
        "versions": {"latent_reward": "0.1.0"},
        "n_examples": len(examples),
        "n_shards": 1,
        "shards": [{"file": shard_path(tmp_path, 0).name, **record}],
    }
    if extracted:
        manifest |= {
            "stats": {
                "tokens": 60,
                "tokens_computed": 50,
                "tokens_saved_by_prompt_sharing": 10,
                "padding_fraction": 0.1,
                "prompt_units": 2,
                "truncated": 1,
            },
            "timings": {"render_seconds": 0.01, "forward_seconds_this_run": 0.2, "tokens_this_run": 60},
        }
    (tmp_path / store_format.MANIFEST).write_text(json.dumps(manifest))
    store = ActivationStore.open(tmp_path, verify=True)
    assert (store.manifest.model.name, store.n_layers, store.manifest.model.d_model) == (model["name"], 3, 8)
    assert store.manifest.model.post_training == (("planted:train",) if extracted else ())
    assert store.manifest.model.chat_template == ("fallback" if extracted else None)
    assert store.manifest.max_tokens == 512 and store.manifest.data_source == "data.jsonl"
    assert store.manifest.stats == (store_format.StoreStats(**manifest["stats"]) if extracted else None)
    assert store.manifest.timings.get("tokens_this_run") == (60 if extracted else None)
    np.testing.assert_array_equal(store.array("eot", [2]), states[:, [2]])
    assert store_format.matching_complete_store(tmp_path, {"max_tokens": 512, "model": model["name"]})
    assert store.manifest.differences({"max_tokens": 256, "dtype": "float32"}) == ["max_tokens"]


def test_a_manifest_missing_what_a_store_needs_is_one_clear_error(store_folder):
    manifest = json.loads((store_folder / store_format.MANIFEST).read_text())
    del manifest["model"]
    (store_folder / store_format.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="not a valid store manifest"):
        ActivationStore.open(store_folder)
