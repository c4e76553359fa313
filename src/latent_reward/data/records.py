"""Read raw records (dicts) from a local file or a Hugging Face Hub dataset."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from latent_reward.errors import UserError

LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".parquet", ".csv", ".csv.gz")

# Splits that hold rated data for Hub datasets whose first split is not the one people want.
HUB_DEFAULT_SPLITS = {
    "HuggingFaceH4/ultrafeedback_binarized": "test_prefs",
    "allenai/reward-bench": "filtered",
}


def is_local(source: str) -> bool:
    """True when `source` is a local file (a known suffix, or an existing path) rather than a Hub id."""
    return source.endswith(LOCAL_SUFFIXES) or Path(source).exists()


def read_records(source: str, split: str | None = None) -> list[dict[str, Any]]:
    """All records of `source`: a local .jsonl/.jsonl.gz/.json/.parquet/.csv file or a Hub id.

    `split` picks a Hub split, or for a local file the records whose `split` field equals it."""
    if is_local(source):
        records = list(_read_local(Path(source)))
        return _local_split(records, split, source) if split else records
    return _read_hub(source, split)


def _named(value: Any) -> bool:
    """A split cell that holds a name (tables read an empty cell as NaN)."""
    return value is not None and not (isinstance(value, float) and value != value)


def _local_split(records: list[dict[str, Any]], split: str, source: str) -> list[dict[str, Any]]:
    named = {str(record["split"]) for record in records if _named(record.get("split"))}
    if not named:
        raise UserError(f"{source} has no 'split' field to pick split {split!r} from")
    if split not in named:
        raise UserError(f"{source} has no records in split {split!r} (its splits: {', '.join(sorted(named))})")
    return [record for record in records if _named(record.get("split")) and str(record["split"]) == split]


def _read_local(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give one data file (.jsonl, .jsonl.gz, .json, .parquet, .csv)")
    name = path.name
    if name.endswith((".jsonl", ".jsonl.gz")):
        yield from _read_jsonl(path)
    elif name.endswith((".json", ".json.gz")):
        yield from _read_json(path)
    elif name.endswith((".parquet", ".csv", ".csv.gz")):
        yield from _read_table(path)
    else:
        raise UserError(f"unknown file type for {path}: use .jsonl, .jsonl.gz, .json, .parquet or .csv")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with _open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise UserError(f"{path}:{line_number} is not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise UserError(f"{path}:{line_number} is not a JSON object")
                yield record
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def _read_json(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with _open_text(path) as handle:
            payload = json.load(handle)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path} as JSON: {error}") from None
    if isinstance(payload, dict):
        payload = next((value for value in payload.values() if isinstance(value, list)), None)
    if not isinstance(payload, list) or not all(isinstance(record, dict) for record in payload):
        raise UserError(f"{path} must hold a list of JSON objects")
    yield from payload


def _read_table(path: Path) -> Iterator[dict[str, Any]]:
    import pandas as pd

    try:
        frame = pd.read_parquet(path) if path.name.endswith(".parquet") else pd.read_csv(path)
    except Exception as error:  # pandas raises many types for malformed files
        raise UserError(f"cannot read {path}: {error}") from None
    yield from (_to_python(record) for record in frame.to_dict(orient="records"))


def _to_python(record: dict[str, Any]) -> dict[str, Any]:
    """Parquet gives numpy arrays for list columns and NaN for empty cells; loaders expect lists and None."""
    return {key: _plain(value) for key, value in record.items()}


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    return None if isinstance(value, float) and value != value else value


def default_hub_split(dataset_id: str) -> str:
    """The split to read from a Hub dataset when none is given ("train" unless the dataset is known)."""
    return HUB_DEFAULT_SPLITS.get(dataset_id, "train")


def _read_hub(dataset_id: str, split: str | None) -> list[dict[str, Any]]:
    from latent_reward.hub import offline_if_unreachable

    offline = offline_if_unreachable()
    import datasets

    split = split or default_hub_split(dataset_id)
    try:
        dataset = datasets.load_dataset(dataset_id, split=split)
    except Exception as error:  # offline, unknown id, unknown split: all end the same way
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot load Hub dataset {dataset_id!r} split {split!r} "
            + (
                "(the Hub cannot be reached and it is not cached); pass a local file with --data"
                if offline
                else f"({first_line})"
            )
        ) from None
    return [_to_python(record) for record in dataset]
