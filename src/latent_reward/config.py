"""Configuration shared by every command: which data, which model, what to extract.

Each is a validated pydantic object with defaults; a workflow's config is built from these and
saved whole to the run's `run.json`, so any result folder says exactly how to reproduce it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from latent_reward.errors import UserError
from latent_reward.positions import POSITIONS, help_text

if TYPE_CHECKING:
    from latent_reward.data.formats import Dataset
    from latent_reward.models.loading import LoadedModel

DEFAULT_DATA = "HuggingFaceH4/ultrafeedback_binarized"
DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_DTYPE = "auto"  # every model-loading path's default precision (the CLI's --dtype, ModelSpec, load_model):
# bfloat16 where the device computes it natively (a GPU, a CPU with bfloat16 instructions), else float32
# (models.devices)


def _device(name: str) -> str:
    from latent_reward.models.devices import check_device  # the models package imports torch: not at the CLI's start

    return check_device(name)


Device = Annotated[str, AfterValidator(_device)]  # a --device name: auto, cpu, cuda, cuda:N or mps


class Spec(BaseModel):
    """Base of every config object: frozen, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSpec(Spec):
    """Where rated conversations come from, and which of them to use."""

    source: str = DEFAULT_DATA  # a local .jsonl/.jsonl.gz/.json/.parquet/.csv file or a Hub dataset id
    split: str | None = Field(
        None,
        description="Hub split (default: the dataset's rated split, e.g. test_prefs); for a local file, the rows "
        "whose split field equals it.",
    )
    format: str | None = Field(None, description="Force a loader instead of detecting it from the fields.")
    limit: int | None = Field(None, ge=1, description="Use only the first N examples.")
    prompts: int | None = Field(None, ge=1, description="Use every response of the first N prompts only.")
    sample_prompts: int | None = Field(
        None,
        ge=1,
        description="Use every response of N prompts drawn at random (seeded by --seed) from the whole file.",
    )
    seed: int = Field(0, description="Seed of --sample-prompts' draw.")
    prompt_field: str | None = Field(None, description="Generic files: the prompt column (text or chat messages).")
    response_field: str | None = Field(None, description="Generic files: the response column.")
    rating_field: str | None = Field(None, description="Generic files: the rating column.")
    group_field: str | None = Field(None, description="Generic files: a prompt-id column (default: the prompt text).")

    def load(self) -> Dataset:
        """The Dataset these settings select (loaded, filtered and limited)."""
        from latent_reward.data import FieldMap, load_dataset

        named = [self.prompt_field, self.response_field, self.rating_field]
        if any(named) and not all(named):
            raise UserError("--prompt-field, --response-field and --rating-field go together")
        fields = (
            FieldMap(self.prompt_field, self.response_field, self.rating_field, self.group_field)
            if self.prompt_field and self.response_field and self.rating_field
            else None
        )
        return load_dataset(
            self.source,
            split=self.split,
            format=self.format,
            fields=fields,
            limit=self.limit,
            prompts=self.prompts,
            sample_prompts=self.sample_prompts,
            seed=self.seed,
        )


class ModelSpec(Spec):
    """Which model, in which precision, on which device."""

    name: str = DEFAULT_MODEL  # bundled name, Hub id or local folder
    dtype: str = DEFAULT_DTYPE
    device: Device = "auto"
    device_map: str | None = None  # transformers' device_map (e.g. "auto"): the layers spread over several devices
    fallback_template: bool = False  # the plain User:/Assistant: format for models without a chat template
    revision: str | None = None

    @model_validator(mode="after")
    def _concrete_dtype(self) -> ModelSpec:
        """ "auto" becomes the precision it names here, so that run.json and store fingerprints record the one used."""
        if self.dtype == "auto":
            from latent_reward.models.devices import resolve_dtype

            object.__setattr__(self, "dtype", resolve_dtype(self.dtype, self.device))
        return self

    def load(self, random_init_seed: int | None = None) -> LoadedModel:
        """The LoadedModel these settings name (with random weights when `random_init_seed` is given)."""
        from latent_reward.models.loading import load_model

        return load_model(
            self.name,
            device=self.device,
            dtype=self.dtype,
            device_map=self.device_map,
            allow_fallback_template=self.fallback_template,
            random_init_seed=random_init_seed,
            revision=self.revision,
        )


class ExtractConfig(Spec):
    """What to read out of the model, and how to batch it."""

    positions: tuple[str, ...] = Field(POSITIONS, description="Where to read: " + help_text())
    layers: tuple[int, ...] | None = None  # None: every layer 0..n_layers (or the first `depth` of them)
    depth: float = Field(
        1.0,
        gt=0,
        le=1,
        description="With every layer asked for: read residual indices 0..ceil(depth x layers) only, and stop the "
        "forward there.",
    )
    token_layers: tuple[int, ...] = ()  # layers kept for every response token (response_tokens)
    max_tokens: int = Field(
        1024, ge=8, description="Input truncation: longer examples keep the prompt's end and the response's start."
    )
    batch_tokens: int = Field(
        1024, ge=64, description="Padded tokens per forward pass (8192 suits a small model on a GPU)."
    )
    shard_size: int = Field(256, ge=1, description="Examples per shard (the unit of resumption).")
    share_prompts: bool = Field(True, description="Run each prompt once for all its responses (KV-cache reuse).")
    logprobs: bool = Field(
        False, description="Also store the model's log-probability of each response (a baseline; needs the LM head)."
    )

    @model_validator(mode="after")
    def _layers_or_depth(self) -> ExtractConfig:
        if self.layers is not None and self.depth < 1:
            raise ValueError("give the layers to read or a depth, not both")
        return self

    @property
    def prompt_tokens(self) -> int:
        """Padded tokens per prompt pass: a chunk of similar-length prompts whose responses are then batched
        together."""
        return 2 * self.batch_tokens

    def fingerprint_fields(self) -> dict:
        """Every option: batching changes the numbers too (float rounding), and a resumed run
        must equal an uninterrupted one exactly. A depth of 1 (every layer) is left out, as stores made before the
        option record it."""
        return self.model_dump(mode="json", exclude={"depth"} if self.depth == 1 else None)
