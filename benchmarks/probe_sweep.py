"""The ridge sweep over all layers of one position, against the same fit done layer by layer in scikit-learn.

Both select the penalty (alpha = factor x training rows, 13 factors) by 5-fold GroupKFold on the
training prompts and refit on all training rows; this script prints the time ratio (target >= 10x)
and the largest difference in test R^2 across layers (target <= 1e-3).

    python benchmarks/probe_sweep.py --store runs/demo/store [--position eot]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from latent_reward.activations import ActivationStore
from latent_reward.data.splits import split_masks
from latent_reward.probes.ridge import DEFAULT_ALPHA_FACTORS, fit_ridge_all_layers


def sklearn_layer_loop(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray
) -> list[float]:
    scores = []
    for layer in range(x.shape[1]):
        features = x[train, layer]
        errors = np.zeros(len(DEFAULT_ALPHA_FACTORS))
        for fold_train, fold_held in GroupKFold(n_splits=5).split(features, groups=groups[train]):
            scaler = StandardScaler().fit(features[fold_train])
            z_train, z_held = scaler.transform(features[fold_train]), scaler.transform(features[fold_held])
            for index, factor in enumerate(DEFAULT_ALPHA_FACTORS):
                model = Ridge(alpha=factor * len(fold_train)).fit(z_train, y[train][fold_train])
                errors[index] += np.sum((model.predict(z_held) - y[train][fold_held]) ** 2)
        factor = DEFAULT_ALPHA_FACTORS[int(errors.argmin())]
        scaler = StandardScaler().fit(features)
        model = Ridge(alpha=factor * len(features)).fit(scaler.transform(features), y[train])
        scores.append(r2_score(y[test], model.predict(scaler.transform(x[test, layer]))))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--position", default="eot")
    args = parser.parse_args()
    store = ActivationStore.open(args.store)
    x = store.array(args.position).astype(np.float32)
    y, groups = store.ratings, store.groups
    masks = split_masks(groups)
    train, test = masks["train"], masks["test"]

    tick = time.perf_counter()
    probes = fit_ridge_all_layers(x[train], y[train], groups[train])[0]
    ours = [r2_score(y[test], probe.predict(x[test, i])) for i, probe in enumerate(probes)]
    ours_seconds = time.perf_counter() - tick

    tick = time.perf_counter()
    reference = sklearn_layer_loop(x, y, groups, train, test)
    sklearn_seconds = time.perf_counter() - tick

    difference = np.max(np.abs(np.subtract(ours, reference)))
    print(
        f"store {args.store}, position {args.position}: {x.shape[0]} examples ({train.sum()} train, {test.sum()} "
        "test), "
        f"{x.shape[1]} layers, d_model {x.shape[2]}"
    )
    print(
        f"latent-reward ridge sweep: {ours_seconds:.2f} s; scikit-learn layer loop: {sklearn_seconds:.2f} s; "
        f"speed-up {sklearn_seconds / ours_seconds:.1f}x (target >= 10x)"
    )
    print(
        f"largest |test R^2 difference| over layers: {difference:.2e} (target <= 1e-3); "
        f"best test R^2 {max(ours):.3f} (ours) vs {max(reference):.3f} (scikit-learn)"
    )


if __name__ == "__main__":
    main()
