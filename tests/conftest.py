"""Shared fixtures; the builders themselves live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

# As the command line quiets the libraries before it imports them (cli/errors.py): tests call it in this process, where
# transformers is imported before any command runs, so its progress bars would otherwise land on the captured stderr.
for _name, _value in (
    ("TRANSFORMERS_VERBOSITY", "error"),
    ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)
# One BLAS/OpenMP thread per process (numpy, scipy, torch read these when first imported): the tests' matrices are
# small,
# and on a 2-core machine shared with other work, threaded eigh and matmul spend most of their time waiting for each
# other (a 320 x 320 eigh took 0.19 s threaded, 0.019 s on one thread here). Set the variables to override.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

# the imports below come after the environment is set, on purpose
import pytest  # noqa: E402

from helpers import tiny_loaded  # noqa: E402
from latent_reward.models.loading import LoadedModel  # noqa: E402


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    return tiny_loaded()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny model and tokenizer saved as a local folder, for CLI and subprocess tests."""
    folder = tmp_path_factory.mktemp("tiny-model")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """The bundled default model (converted to a safetensors cache on first use)."""
    from latent_reward.models import load_model

    return load_model("smollm2-135m-instruct", dtype="float32")  # the tests compare its states with float32 forwards


@pytest.fixture(scope="session")
def tiny_probe_folder(tiny, tiny_model_dir, tmp_path_factory) -> Path:
    """A probe swept on the tiny model's states of synthetic examples, saved; it records the saved tiny model."""
    from helpers import synthetic_examples
    from latent_reward.activations import ExtractConfig, extract
    from latent_reward.analysis.sweep import SweepConfig, sweep

    store = extract(
        tiny,
        synthetic_examples(n_prompts=12, per_prompt=3),
        tmp_path_factory.mktemp("probe-store"),
        ExtractConfig(),
        progress=False,
    ).store
    probe = sweep(store, SweepConfig(n_boot=100), progress=False).best_probe
    probe.info.model = str(tiny_model_dir)
    return probe.save(tmp_path_factory.mktemp("probe") / "probe")
