"""The Python API: every command as a function that returns its typed result (`import latent_reward as lr`).

Each is a thin call into the command's workflow, which writes the same result folder as the command line. Keyword
options are the fields of the command's job model (`ScoreJob`, `SteerJob`, ...: see each function), checked by
pydantic; `data` may be a file path or Hub id or a `DataSpec`, and nested configs a model or a dict. Two more
calls for small in-memory work: `capture` (residual states as arrays) and `steering_vector` (a probe's direction
for the `steering` context manager).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latent_reward.activations.capture import Capture
from latent_reward.activations.capture import capture as capture_states
from latent_reward.activations.store import ActivationStore
from latent_reward.config import DataSpec, ModelSpec
from latent_reward.data.schema import Example, Message
from latent_reward.errors import UserError
from latent_reward.generation.steering import SteeringVector
from latent_reward.models.loading import LoadedModel
from latent_reward.positions import POSITIONS
from latent_reward.probes import Probe

if TYPE_CHECKING:  # the workflows are imported when called: `lr.capture` need not load the report's libraries
    from latent_reward.experiments.compare import CompareResult
    from latent_reward.experiments.conversation import ConversationReport
    from latent_reward.experiments.generate import Generation
    from latent_reward.experiments.judge import JudgeSummary
    from latent_reward.experiments.reward_model import ScoreResult
    from latent_reward.experiments.steer import SteerResult
    from latent_reward.workflows.respond import RespondResult
    from latent_reward.workflows.train import TrainSummary

PathLike = str | Path


def _data(data: PathLike | DataSpec) -> DataSpec:
    return data if isinstance(data, DataSpec) else DataSpec(source=str(data))


def _probe(probe: PathLike | Probe) -> Probe:
    return probe if isinstance(probe, Probe) else Probe.load(probe)


def score(
    probe: PathLike, data: PathLike | DataSpec, out: PathLike, *, progress: bool = True, **options: Any
) -> ScoreResult:
    """`latent-reward score`: a saved probe as a reward model on `data`; returns the ScoreResult. Options: ScoreJob's
    (model, reference, normalization, n_boot, seed, device, device_map)."""
    from latent_reward.workflows.score import ScoreJob, run_score

    return run_score(ScoreJob(probe=probe, data=_data(data), out=out, **options), progress).result


def steer(probe: PathLike, out: PathLike, *, progress: bool = True, **options: Any) -> SteerResult:
    """`latent-reward steer`: generate while pushing along the probe's direction, scored independently; returns the
    SteerResult. Options: SteerJob's (store, data, scorer_probes, judge, config: a SteerConfig or dict, device,
    device_map)."""
    from latent_reward.workflows.steer import SteerJob, run_steer

    if options.get("data") is not None:
        options["data"] = _data(options["data"])
    return run_steer(SteerJob(probe=probe, out=out, **options), progress).result


def generate(
    prompt: str, probe: PathLike, *, on_token: Callable[[str, float], None] | None = None, **options: Any
) -> Generation:
    """`latent-reward generate`: a reply with the probe's estimate at every token; returns the Generation.
    `on_token(text, estimate)` is called as each token is chosen. Options: GenerateJob's (model, max_new_tokens,
    temperature, seed, html, device, device_map)."""
    from latent_reward.workflows.generate import GenerateJob, run_generate

    return run_generate(GenerateJob(prompt=prompt, probe=probe, **options), on_token).result


def compare(
    runs: Sequence[PathLike], out: PathLike | None = None, *, n_boot: int = 1000, seed: int = 0
) -> CompareResult:
    """`latent-reward compare`: run folders side by side; returns the CompareResult (and writes compare.html into `out`
    when it is given)."""
    from latent_reward.experiments.compare import compare as compare_runs
    from latent_reward.workflows.compare import CompareJob, run_compare

    folders = [Path(run) for run in runs]
    if out is None:
        return compare_runs(folders, n_boot, seed)
    return run_compare(CompareJob(runs=tuple(folders), out=Path(out), n_boot=n_boot, seed=seed)).result


def conversation(
    data: PathLike | DataSpec, prompt_probe: PathLike, out: PathLike, **options: Any
) -> ConversationReport:
    """`latent-reward conversation`: does the model steer the user?; returns the ConversationReport. Options:
    ConversationJob's (response_probe, xstest, user_simulators, prompts, config, device, device_map)."""
    from latent_reward.workflows.conversation import ConversationJob, run_conversation

    return run_conversation(ConversationJob(data=_data(data), prompt_probe=prompt_probe, out=out, **options)).result


def judge(
    data: PathLike | DataSpec, endpoint: Any, out: PathLike, *, progress: bool = True, **options: Any
) -> JudgeSummary:
    """`latent-reward judge`: rate every response with a judge behind an OpenAI-compatible endpoint (an `Endpoint` or a
    dict: base_url, model, ...); returns the JudgeSummary. Options: JudgeJob's (config: a JudgeConfig or dict)."""
    from latent_reward.workflows.judge import JudgeJob, run_judge

    return run_judge(JudgeJob(data=_data(data), endpoint=endpoint, out=out, **options), progress).result


def respond(prompts: PathLike | DataSpec, out: PathLike, *, progress: bool = True, **options: Any) -> RespondResult:
    """`latent-reward respond`: responses to a prompt set, unrated, ready for `judge`; returns the RespondResult.
    Options: RespondJob's (models: ModelSpecs or dicts run here, endpoint_models with endpoint, samples,
    generation)."""
    from latent_reward.workflows.respond import RespondJob, run_respond

    return run_respond(RespondJob(prompts=_data(prompts), out=out, **options), progress).result


def train(
    method: str, model: str, data: PathLike | DataSpec, out: PathLike, *, config: Any = None, **options: Any
) -> TrainSummary:
    """`latent-reward train METHOD`: post-train `model` with TRL (sft, dpo or online); returns the TrainSummary.
    `config`: PostTrainConfig's fields (a dict) or one (its method is set to `method`). Options: TrainJob's (dtype,
    device, device_map, reward, api_key_env)."""
    from latent_reward.training.trainers import PostTrainConfig
    from latent_reward.workflows.train import TrainJob, run_train

    if isinstance(config, PostTrainConfig):
        settings = config.model_copy(update={"method": method})
    else:
        settings = PostTrainConfig(**{**(config or {}), "method": method})
    return run_train(TrainJob(model=model, data=_data(data), out=out, config=settings, **options)).result


def verify(store: PathLike) -> ActivationStore:
    """`latent-reward verify`: the store, opened after checking every shard's size and SHA-256 (a damaged shard is a
    UserError naming it)."""
    return ActivationStore.open(store, verify=True)


def capture(
    model: LoadedModel | str,
    examples: Sequence[Example] | Sequence[list[Message]],
    positions: Sequence[str] | str = POSITIONS,
    layers: Sequence[int] | str | None = None,
    max_tokens: int | None = None,
    batch_tokens: int = 1024,
) -> Capture:
    """Residual states in memory, TransformerLens' `run_with_cache` habit: `capture(model, examples, positions, layers)`
    returns a Capture whose `states[position]` is float32 [n, len(layers), d_model] (all layers by default), read by
    the extraction's own forward. `model`: a LoadedModel or a name (loaded as `ModelSpec(name=...)` would). With rated
    Examples, `Capture.to_store()` gives the ActivationStore that `sweep`, `reward_readout` and `prompt_only` take."""
    loaded = model if isinstance(model, LoadedModel) else ModelSpec(name=model).load()
    return capture_states(loaded, examples, positions, layers, max_tokens, batch_tokens)


def steering_vector(
    probe: PathLike | Probe, store: PathLike | ActivationStore | None = None, layer: int | None = None
) -> SteeringVector:
    """The probe's direction as a SteeringVector for `lr.steering`: at the probe's layer (or refitted at `layer` on the
    probe's training prompts, as the steer experiment does), with the strength unit the experiment uses (the standard
    deviation of the stored states' projection on it). `store`: the probe's activation store (default: the one it
    records); without one, the probe's own layer and unit 1."""
    from latent_reward.experiments.steer import direction_vectors

    probe = _probe(probe)
    own = probe.info.layer
    layer = own if layer is None else layer
    if layer is None:
        raise UserError("the probe does not record its layer; pass layer=")
    folder = store if store is not None else probe.info.store
    if folder is None:
        if layer != own:
            raise UserError("a direction at another layer is refitted on the probe's store; pass store=")
        return SteeringVector(probe.direction, layer, 1.0, probe.info.position, probe.info.model)
    opened = folder if isinstance(folder, ActivationStore) else ActivationStore.open(folder)
    vectors, sd = direction_vectors(opened, probe, layer, ("probe",), seed=0)
    return SteeringVector(vectors["probe"], layer, sd["probe"], probe.info.position, probe.info.model)
