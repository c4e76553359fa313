"""What the text baselines cost on a real dataset: each baseline cross-fitted in 5 folds over prompts, for the pooled
target and for the within-prompt target (ratings and features centered per prompt), as `run` fits them.

    python benchmarks/text_baselines.py --data ../shared/data/arena_bench_v1_gpt4_scores.jsonl.gz

Prints wall time per baseline and target, the out-of-fold r (pooled) and within-prompt accuracy (within), the total
and the peak memory; no model and no store are needed. At scale (AlpacaEval's 48,458 answers):

    python benchmarks/text_baselines.py --data ../shared/data/alpacaeval2_gpt4turbo_annotations.jsonl.gz

`--capped-terms 20000` fits TF-IDF as it was fitted before its vocabulary was capped on data past 8,192 rows, and
`--only NAME` times some baselines alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import numpy as np

from latent_reward.data.formats import load_dataset
from latent_reward.data.splits import group_folds
from latent_reward.evaluation.baselines import TFIDF_CAP_ROWS, TFIDF_CAPPED_TERMS, TextData, available_baselines
from latent_reward.evaluation.groups import center_within_groups, group_sizes
from latent_reward.evaluation.metrics import pearson, within_prompt_accuracy


def out_of_fold(fit_predict, data: TextData, folds: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Each fold's rows predicted by a fit on the other folds' usable rows."""
    predictions = np.zeros(len(data.y))
    for k in np.unique(folds):
        predictions[folds == k] = fit_predict(data, (folds != k) & usable)[folds == k]
    return predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/arena_bench_v1_gpt4_scores.jsonl.gz")
    parser.add_argument("--prompts", type=int, default=None, help="keep every response to the first N prompts")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--capped-terms",
        type=int,
        default=TFIDF_CAPPED_TERMS,
        help=f"terms per TF-IDF column on data past {TFIDF_CAP_ROWS:,} rows",
    )
    parser.add_argument("--only", action="append", default=None, help="this baseline only (repeatable)")
    args = parser.parse_args()

    examples = load_dataset(args.data, prompts=args.prompts).examples
    groups = np.array([e.group for e in examples])
    data = TextData(
        y=np.array([e.rating for e in examples], dtype=np.float64),
        groups=groups,
        prompts=[e.prompt_text for e in examples],
        responses=[e.response for e in examples],
        generators=[e.meta.get("generator") for e in examples],
        tfidf_capped_terms=args.capped_terms,
    )
    folds = group_folds(groups, args.folds, 0)
    multi = group_sizes(groups) > 1
    centered = dataclasses.replace(data, y=center_within_groups(data.y, groups), center=True)
    print(f"{len(examples)} responses, {len(set(groups))} prompts, {args.folds} folds")
    total = time.perf_counter()
    for baseline in (b for b in available_baselines(data) if args.only is None or b.name in args.only):
        tick = time.perf_counter()
        pooled = out_of_fold(baseline.fit_predict, data, folds, np.ones(len(groups), dtype=bool))
        pooled_s, tick = time.perf_counter() - tick, time.perf_counter()
        within = out_of_fold(baseline.fit_predict, centered, folds, multi)
        within_s = time.perf_counter() - tick
        accuracy = within_prompt_accuracy(centered.y[multi], within[multi], groups[multi])
        print(
            f"  {baseline.name:28s} pooled {pooled_s:6.1f} s (r {pearson(data.y, pooled):.3f})  "
            f"within {within_s:6.1f} s (accuracy {accuracy:.3f})"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"text baselines total: {time.perf_counter() - total:.1f} s, peak {peak:.2f} GB")


if __name__ == "__main__":
    main()
