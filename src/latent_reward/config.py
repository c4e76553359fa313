"""Run configuration: validated options with their defaults, shared by the CLI and the library."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from latent_reward.positions import DEFAULT_POSITIONS


class ExtractConfig(BaseModel):
    """What to read out of the model, and how to batch it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    positions: tuple[str, ...] = DEFAULT_POSITIONS
    layers: tuple[int, ...] | None = None  # None: every layer 0..n_layers
    token_layers: tuple[int, ...] = ()  # layers kept for every response token (response_tokens)
    max_tokens: int = Field(1024, ge=8)
    batch_tokens: int = Field(1024, ge=64, description="padded tokens per forward pass")
    shard_size: int = Field(256, ge=1, description="examples per shard (the unit of resumption)")
    share_prompts: bool = True  # run a prompt once for all its responses (KV-cache reuse)
    logprobs: bool = False  # the model's mean log-probability of each response (needs the LM head)

    def fingerprint_fields(self) -> dict:
        """Every option: batching changes the numbers too (float rounding), and a resumed run
        must equal an uninterrupted one exactly."""
        return self.model_dump(mode="json")
