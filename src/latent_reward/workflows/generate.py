"""`latent-reward generate`: a reply from the probe's model with the probe's live estimate at every token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from latent_reward.config import Device, Spec
from latent_reward.experiments.generate import Generation, generate_with_estimates
from latent_reward.probes import Probe
from latent_reward.probes.reader import probe_model
from latent_reward.report.html import write_lens_page
from latent_reward.workflows.base import Outcome, start


class GenerateJob(Spec):
    prompt: str
    probe: Path
    model: str | None = None
    max_new_tokens: int = Field(200, ge=1, description="Tokens generated per reply, at most.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 = greedy, > 0 samples (seeded).")
    seed: int = 0
    html: Path | None = Field(None, description="Also write the colored reply as an HTML page here.")
    device: Device = "auto"
    device_map: str | None = None


def run_generate(job: GenerateJob, on_token: Callable[[str, float], None] | None = None) -> Outcome[Generation]:
    """The reply and its estimates; no result folder (the lens page is written to `html` when it is given)."""
    with start("generate", job, None) as folder:
        probe = Probe.load(job.probe)
        loaded = probe_model(probe, job.model, job.device, job.device_map)
        reply = generate_with_estimates(
            loaded,
            probe,
            [{"role": "user", "content": job.prompt}],
            job.max_new_tokens,
            job.temperature,
            job.seed,
            on_token,
        )
        page = None
        if job.html:
            low, high = probe.info.rating_range or (0.0, 1.0)
            page = write_lens_page(
                job.html,
                f"{loaded.info.name}: {job.prompt[:80]}",
                [{"caption": job.prompt, "tokens": reply.tokens, "estimates": reply.estimates}],
                low,
                high,
            )
        return folder.finish(reply, report=page)
