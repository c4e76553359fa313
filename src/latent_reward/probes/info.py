"""A saved probe's provenance: which model, store, cell and target it reads, which prompts it was fitted and chosen on
(so that nothing scores it there), and what its fit chose.

`ProbeInfo` is `Probe.info` and the "info" of probe.json; `ProbeProvenance` (every field but the prompt lists) is
what results record about the probe they used, as a `Provenance` field. Probe folders and results written before
these models (a flat dict with no "version") are converted by `from_flat` when they are read.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from latent_reward.errors import UserError
from latent_reward.positions import PROMPT_POSITIONS

INFO_VERSION = 2  # 1: the flat dict (no "version" field), the fit's choices beside the provenance


class ProbeProvenance(BaseModel):
    """Where a probe reads and what it was fitted for (everything a result shows about the probe)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    version: int = INFO_VERSION
    target: str | None = None  # rating, an aspect, rating-within-prompt, prompt mean rating...
    model: str | None = None  # the model whose states it reads (a Hub id or a local path)
    model_dtype: str | None = None
    chat_template: str | None = None  # "model" or "fallback"
    store: str | None = None  # the activation store it was fitted on (absolute path; None for a store in memory)
    max_tokens: int | None = None  # the token budget of that store
    position: str | None = None
    layer: int | None = None
    group_key_version: int | None = None  # how prompt ids were derived when it was saved
    rating_range: tuple[float, float] | None = None  # 5% and 95% quantiles of the training ratings (for colours)
    fit: dict[str, Any] = {}  # what the fit chose, by kind: ridge alpha_factor; sgd/mlp config, best_epoch, epochs_run,
    # final_val_loss; pairwise pairs

    def cell(self) -> tuple[str, int]:
        """(position, layer): where the probe reads; a UserError when it does not record them."""
        if self.position is None or self.layer is None:
            raise UserError("the probe does not record the position and layer it reads")
        return self.position, self.layer

    @property
    def reads_prompt_only(self) -> bool:
        """Whether the probe reads a position before the response: one value for every response to a prompt, so it
        cannot rank responses to the same prompt (a pair, best-of-n, a reward for RL, a reply's quality)."""
        return self.position in PROMPT_POSITIONS


class ProbeInfo(ProbeProvenance):
    """`ProbeProvenance` with the prompts the probe was fitted on and chosen on."""

    train_groups: list[str] = []
    validation_groups: list[str] = []

    def excluded_groups(self) -> set[str]:
        """The prompts the probe may not be scored on: those it was trained or validated on."""
        return set(self.train_groups) | set(self.validation_groups)

    def provenance(self) -> ProbeProvenance:
        """Everything but the prompt lists (what a result records)."""
        return ProbeProvenance.model_validate(self.model_dump(exclude={"train_groups", "validation_groups"}))


def from_flat(value: Any) -> Any:
    """A saved info in the current form: version 1 (a flat dict, no "version") had the fit's choices beside the fields.
    Anything else is returned as it is."""
    if not isinstance(value, dict) or "version" in value:
        return value
    fields = ProbeInfo.model_fields
    return {
        **{key: item for key, item in value.items() if key in fields},
        "version": INFO_VERSION,
        "fit": {key: item for key, item in value.items() if key not in fields},
    }


# A result's record of its probe, read from results written by any version.
Provenance = Annotated[ProbeProvenance, BeforeValidator(from_flat)]
