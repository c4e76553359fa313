"""A store from a user's own arrays (`ActivationStore.from_arrays`) and a store's export (`to_dataset`, `to_parquet`):
the analyses run on arrays in memory and find a planted signal, and exports keep example order whatever the shards'."""

import numpy as np
import pytest

import latent_reward as lr
from latent_reward.activations import store as store_format
from latent_reward.data.schema import Example
from latent_reward.errors import UserError
from latent_reward.experiments.prompt_only import PromptOnlyConfig
from latent_reward.experiments.readout import ReadoutConfig
from latent_reward.io import write_json


def planted_arrays(n_groups=60, per_group=4, d=12, seed=0):
    """eot: the rating is linear in layer 2 (one direction); assistant_start: each prompt's own term, in layer 1."""
    rng = np.random.default_rng(seed)
    group_index = np.repeat(np.arange(n_groups), per_group)
    prompt_value, response_value = rng.normal(size=n_groups)[group_index], rng.normal(size=len(group_index))
    ratings = response_value + 0.7 * prompt_value + 0.1 * rng.normal(size=len(group_index))
    eot, start = rng.normal(size=(len(group_index), 4, d)), rng.normal(size=(n_groups, 4, d))[group_index]
    eot[:, 2] += np.outer(response_value, rng.normal(size=d))
    start[:, 1] += np.outer(prompt_value, rng.normal(size=d))
    return {"eot": eot, "assistant_start": start}, ratings, np.array([f"p{g}" for g in group_index])


def test_sweep_readout_and_prompt_only_find_a_planted_signal_in_arrays_held_in_memory(tmp_path):
    states, ratings, groups = planted_arrays()
    store = lr.ActivationStore.from_arrays(states, ratings, groups, layers=[0, 4, 8, 12], n_layers=12)
    assert store.folder is None and store.layers == [0, 4, 8, 12] and store.n_layers == 12
    assert store.ids == [f"arrays:{i}" for i in range(len(ratings))] and store.groups.tolist() == groups.tolist()
    np.testing.assert_array_equal(store.array("eot"), states["eot"].astype(np.float16))
    fit = lr.sweep(store, progress=False)
    assert (fit.result.best.position, fit.result.best.layer) == ("eot", 8)  # the planted column, named by `layers`
    assert fit.result.best_test.pearson.value > 0.7 and fit.best_probe.info.store is None
    quick = ReadoutConfig(permutations=10, split_seeds=1, sgd_grid=False)
    readout, _, _ = lr.reward_readout(store, quick, progress=False)
    assert readout.probe.scores.pearson.low > 0.7
    assert all(cell.position == "eot" and cell.layer == 8 for cell in readout.fold_cells)
    assert not {"response length", "TF-IDF response"} & {c.name for c in readout.comparisons}  # no text baselines
    assert readout.tfidf_terms is None
    expected = lr.prompt_only(store, PromptOnlyConfig(n_boot=200), progress=False)
    assert expected.cross_fitted.pearson.low > 0.3 and expected.best.layer == 4  # the prompt term, at assistant_start
    on_disk = lr.ActivationStore.from_arrays(
        states, ratings, groups, layers=[0, 4, 8, 12], n_layers=12, folder=tmp_path / "s"
    )
    assert on_disk.folder == tmp_path / "s" and lr.verify(tmp_path / "s").ids == store.ids  # the store's own writer
    np.testing.assert_array_equal(
        lr.sweep(on_disk, progress=False).predictions[("eot", 8, "ridge")], fit.predictions[("eot", 8, "ridge")]
    )


def test_from_arrays_takes_examples_and_refuses_what_does_not_fit(tmp_path):
    states, ratings, groups = planted_arrays(n_groups=3, per_group=2, d=4)
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a " * i}] for i in range(6)]
    examples = [
        Example(id=f"e{i}", group=str(g), rating=float(r), messages=messages[i])
        for i, (g, r) in enumerate(zip(groups, ratings))
    ]
    store = lr.ActivationStore.from_arrays(states, examples=examples, stats={"logprob_mean": np.zeros(6, np.float32)})
    assert store.ids == [e.id for e in examples] and store.layers == [0, 1, 2, 3] and store.has_stat("logprob_mean")
    with pytest.raises(UserError, match="ratings= and groups="):
        lr.ActivationStore.from_arrays(states, ratings)
    with pytest.raises(UserError, match="n examples"):
        lr.ActivationStore.from_arrays({"eot": states["eot"][:5]}, ratings, groups)
    with pytest.raises(UserError, match="n layers"):
        lr.ActivationStore.from_arrays(states, ratings, groups, layers=[0, 1])
    with pytest.raises(UserError, match="a store holds the positions"):
        lr.ActivationStore.from_arrays({"resid_post": states["eot"]}, ratings, groups)
    with pytest.raises(UserError, match="float16"):
        lr.ActivationStore.from_arrays({"eot": states["eot"] * 1e6}, ratings, groups)
    lr.ActivationStore.from_arrays(states, ratings, groups, folder=tmp_path / "s")
    with pytest.raises(UserError, match="already holds a store"):
        lr.ActivationStore.from_arrays(states, ratings, groups, folder=tmp_path / "s")


def test_exports_keep_example_order_when_shards_hold_rows_out_of_order(tmp_path):
    """Extraction writes each shard's rows in its own order (by length); exports follow the examples, not the shards."""
    rng = np.random.default_rng(1)
    n, d = 6, 5
    states = rng.normal(size=(n, 2, d)).astype(np.float16)
    examples = [
        Example(
            id=f"x{i}",
            group=f"g{i // 2}",
            rating=float(i),
            aspects={"honesty": i / 2} if i % 2 else {},
            messages=[{"role": "user", "content": f"q{i // 2}"}, {"role": "assistant", "content": f"r{i}"}],
        )
        for i in range(n)
    ]
    folder = tmp_path / "store"
    (folder / store_format.SHARDS).mkdir(parents=True)
    for index, rows in enumerate(([4, 0, 3], [5, 1, 2])):
        store_format.write_shard(
            folder,
            index,
            {
                "eot": states[rows],
                "example_index": np.array(rows, dtype=np.int64),
                "n_tokens": np.array(rows, dtype=np.int64) * 10,
            },
        )
    store_format.write_examples(folder, examples)
    manifest = store_format.new_manifest({}, {"name": "m", "n_layers": 1}, ["eot"], [0, 1], [], 1, "test", {})
    write_json(
        folder / store_format.MANIFEST,
        manifest.model_copy(
            update={
                "status": "complete",
                "n_examples": n,
                "n_shards": 2,
                "shards": store_format.shard_records(folder, 2),
            }
        ),
    )
    store = lr.ActivationStore.open(folder)

    dataset = store.to_dataset()
    assert dataset["id"] == [f"x{i}" for i in range(n)] == store.ids
    assert dataset["rating"] == [float(i) for i in range(n)] and dataset["n_tokens"] == [10 * i for i in range(n)]
    assert dataset["messages"][3] == examples[3].messages and dataset["group"][5] == "g2"
    np.testing.assert_array_equal(np.asarray(dataset.with_format("numpy")["eot"]), states.astype(np.float32))
    assert np.isnan(dataset["aspect_honesty"][0]) and dataset["aspect_honesty"][3] == 1.5
    one_layer = store.to_dataset(positions=["eot"], layers=[1])
    layer_one = np.asarray(one_layer.with_format("numpy")["eot"])[:, 0]
    np.testing.assert_array_equal(layer_one, states[:, 1].astype(np.float32))

    import datasets
    import pandas as pd

    path = store.to_parquet(tmp_path / "store.parquet")
    frame = pd.read_parquet(path)
    assert frame["id"].tolist() == store.ids and frame["rating"].tolist() == [float(i) for i in range(n)]
    back = datasets.Dataset.from_parquet(str(path))
    np.testing.assert_array_equal(np.asarray(back.with_format("numpy")["eot"]), states.astype(np.float32))
