"""Choose a loader from the fields of the records, and load a dataset into Examples."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from latent_reward.data import generic, helpsteer, judged, native, pairs, ultrafeedback
from latent_reward.data.records import default_hub_split, is_local, read_records
from latent_reward.data.schema import Example
from latent_reward.data.splits import hash_order
from latent_reward.errors import UserError

Loader = Callable[[list[dict[str, Any]], Counter], Iterator[Example]]


@dataclass(frozen=True)
class Format:
    """A data format: its loader and the rule that recognises its records. Detection tries formats by `priority`
    (highest first, so the most specific rule wins): a record matches when it has every field in `fields`, at least one
    in `any_of` (when given), and passes `check` (when given)."""

    name: str
    load: Loader
    fields: frozenset[str]
    priority: int
    any_of: frozenset[str] = frozenset()
    check: Callable[[dict[str, Any]], bool] | None = None

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether `record` has this format's fields."""
        keys = set(record)
        return (
            self.fields <= keys
            and (not self.any_of or bool(self.any_of & keys))
            and (self.check is None or self.check(record))
        )


def _looks_like_hh(record: dict[str, Any]) -> bool:
    text = record.get("prompt") if "prompt" in record else record.get("chosen")
    return isinstance(text, str) and (text.startswith("Human:") or text.startswith("\n\nHuman:"))


FORMATS: tuple[Format, ...] = (
    Format("latent-reward", native.load, frozenset(native.FIELDS), 80),
    Format("ultrafeedback", ultrafeedback.load_unbinarized, frozenset({"instruction", "completions"}), 70),
    Format(
        "ultrafeedback-binarized",
        ultrafeedback.load_binarized,
        frozenset({"score_chosen", "score_rejected", "chosen", "rejected"}),
        60,
    ),
    Format("helpsteer2", helpsteer.load, frozenset({"prompt", "response", "helpfulness"}), 50),
    Format("arena", judged.load_arena, frozenset({"question", "answer", "score"}), 40),
    Format(
        "alpacaeval",
        judged.load_alpacaeval,
        frozenset({"instruction", "output"}),
        30,
        any_of=frozenset({"preference", "p_win_vs_reference"}),
    ),
    Format("hh-rlhf", pairs.load_hh_rlhf, frozenset({"chosen", "rejected"}), 20, check=_looks_like_hh),
    Format("pairs", pairs.load_pairs, frozenset({"chosen", "rejected", "prompt"}), 10),
)
LOADERS: dict[str, Loader] = {f.name: f.load for f in FORMATS}
FORMAT_NAMES = (*LOADERS, "generic")


def detect_format(record: dict[str, Any]) -> str:
    """The name of the highest-priority format whose rule the record matches."""
    for candidate in sorted(FORMATS, key=lambda f: -f.priority):
        if candidate.matches(record):
            return candidate.name
    raise UserError(
        f"cannot tell the data format from the fields {sorted(record)}; pass --format "
        f"({', '.join(FORMAT_NAMES)}) or --prompt-field/--response-field/--rating-field"
    )


@dataclass
class Dataset:
    """Loaded examples with what was skipped on the way, and where they came from."""

    examples: list[Example]
    source: str
    format: str
    n_records: int
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldMap:
    """Column names for the generic loader."""

    prompt: str
    response: str
    rating: str
    group: str | None = None


def load_dataset(
    source: str,
    split: str | None = None,
    format: str | None = None,
    fields: FieldMap | None = None,
    limit: int | None = None,
    prompts: int | None = None,
    sample_prompts: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load `source` (a local file or a Hub id) into Examples, choosing the loader automatically.

    `limit` keeps the first N examples; `prompts` keeps every example of the first N prompts (in
    order of first appearance), for files ordered by model or sample rather than by prompt;
    `sample_prompts` keeps every example of N prompts drawn at random (seeded), from the whole file.
    Records with a missing (null) rating, an empty response or an empty prompt are skipped and
    counted; a non-numeric rating or a missing required field is an error.
    """
    records = read_records(source, split)
    if not records:
        raise UserError(f"{source} holds no records")
    loader = _choose_loader(records[0], format, fields)
    skips: Counter[str] = Counter()
    examples = []
    kept_groups: set[str] = set()
    hub_split = None if is_local(source) else (split or default_hub_split(source))
    if sample_prompts is not None:
        limit_after, limit = limit, None  # sample from the whole file first
    try:
        for example in loader(records, skips):
            if prompts is not None and example.group not in kept_groups:
                if len(kept_groups) >= prompts:
                    continue
                kept_groups.add(example.group)
            if hub_split and "source_split" not in example.meta:
                example = replace(example, meta={**example.meta, "source_split": hub_split})
            examples.append(example)
            if limit is not None and len(examples) >= limit:
                break
    except (TypeError, AttributeError, KeyError, IndexError) as error:
        # The loaders check the fields they read; this catches shapes they do not expect.
        raise UserError(
            f"{source}: a record's shape does not fit the {format or detect_format(records[0])} format "
            f"({type(error).__name__}: {error})"
        ) from None
    if sample_prompts is not None:
        examples = _sample_prompts(examples, sample_prompts, seed)[:limit_after]
    if not examples:
        reasons = ", ".join(f"{count} {reason}" for reason, count in skips.items()) or "none found"
        raise UserError(f"{source} has no usable rated responses ({reasons})")
    chosen_format = format or ("generic" if fields else detect_format(records[0]))
    return Dataset(examples, source, chosen_format, len(records), dict(skips))


def _choose_loader(first: dict[str, Any], format: str | None, fields: FieldMap | None) -> Loader:
    if fields is not None or format == "generic":
        if fields is None:
            raise UserError("--format generic needs --prompt-field, --response-field and --rating-field")
        return partial(
            generic.load,
            prompt_field=fields.prompt,
            response_field=fields.response,
            rating_field=fields.rating,
            group_field=fields.group,
        )
    if format is None:
        return LOADERS[detect_format(first)]
    if format not in LOADERS:
        raise UserError(f"unknown format {format!r}; choose one of {', '.join(FORMAT_NAMES)}")
    return LOADERS[format]


def _sample_prompts(examples: list[Example], n: int, seed: int) -> list[Example]:
    """Every example of n prompts drawn by a seeded hash of the prompt (the same prompts whatever the file order)."""
    chosen = set(hash_order([e.group for e in examples], seed)[:n])
    return [e for e in examples if e.group in chosen]
