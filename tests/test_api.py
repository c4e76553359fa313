"""The Python API (`import latent_reward as lr`): importing it changes no global state, every command is a top-level
function with a typed result, and the functions run the commands' workflows."""

import dataclasses
import importlib
import inspect
import json
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import matplotlib
import pytest
from pydantic import BaseModel

import latent_reward as lr
import latent_reward.api as api
from helpers import write_jsonl

COMMANDS = ("score", "steer", "generate", "compare", "conversation", "judge", "respond", "train", "verify")
SRC = str(Path(lr.__file__).resolve().parents[1])

NO_GLOBAL_STATE = """
import json, sys
import matplotlib
before = (matplotlib.get_backend(), dict(matplotlib.rcParams))
import latent_reward as lr
for name in lr.__all__:
    getattr(lr, name)  # every public name, resolved (the api, the workflows, the report)
import latent_reward.cli, latent_reward.report.html, latent_reward.report.steer, latent_reward.report.conversation
from latent_reward.report import figures
after_import = (matplotlib.get_backend(), dict(matplotlib.rcParams))

@figures.styled
def draw(folder):
    assert matplotlib.rcParams["font.size"] == figures.STYLE["font.size"]  # the report's style, while drawing
    figure, axis = figures.new_figure(figsize=(2, 2))
    axis.plot([0, 1], [1, 0])
    return figures.save(figure, folder, "drawn")

path = draw(sys.argv[1])
after_drawing = (matplotlib.get_backend(), dict(matplotlib.rcParams))
import matplotlib.pyplot as plt
changed = sorted(k for k in before[1] if before[1][k] != after_import[1][k] or before[1][k] != after_drawing[1][k])
print(json.dumps({"backend": [before[0], after_import[0], after_drawing[0]], "changed": changed,
                  "png": open(path, "rb").read(4) == b"\\x89PNG", "open_figures": len(plt.get_fignums())}))
"""


@pytest.mark.slow
def test_importing_the_package_changes_no_global_state(tmp_path):
    """A user's matplotlib backend (svg here: the old report switched every importer to Agg) and rcParams survive the
    import of every public name and the drawing of a report figure."""
    cache = Path(matplotlib.get_cachedir())
    for fonts in cache.glob("fontlist-*.json"):  # the fresh HOME gets this user's font list, not a minutes-long rebuild
        (tmp_path / ".cache" / "matplotlib").mkdir(parents=True, exist_ok=True)
        shutil.copy(fonts, tmp_path / ".cache" / "matplotlib" / fonts.name)
    done = subprocess.run(
        [sys.executable, "-c", NO_GLOBAL_STATE, str(tmp_path)],
        capture_output=True,
        text=True,
        env={"MPLBACKEND": "svg", "PYTHONPATH": SRC, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"backend": ["svg", "svg", "svg"], "changed": [], "png": True, "open_figures": 0}


def test_every_command_is_a_top_level_function_returning_a_typed_result():
    namespace = dict(vars(api))
    for module in (
        "experiments.compare",
        "experiments.generate",
        "experiments.judge",
        "experiments.reward_model",
        "experiments.steer",
        "workflows.conversation",
        "workflows.respond",
        "workflows.train",
    ):
        namespace.update(vars(importlib.import_module(f"latent_reward.{module}")))
    for name in COMMANDS:
        function = getattr(lr, name)
        assert function is getattr(api, name) and name in lr.__all__
        returned = typing.get_type_hints(function, globalns=namespace)["return"]
        assert inspect.isclass(returned) and returned is not dict, name
        assert issubclass(returned, BaseModel) or dataclasses.is_dataclass(returned) or returned is lr.ActivationStore


def test_score_and_verify_run_the_commands_workflows(tiny_probe_folder, tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"question {i} the fox", "chosen": "paris " * (i + 2), "rejected": "dog"} for i in range(8)],
    )
    result = lr.score(tiny_probe_folder, pairs, tmp_path / "score", n_boot=100, progress=False)
    assert isinstance(result, BaseModel) and result.pair_accuracy[0].pairs == 8
    assert json.loads((tmp_path / "score" / "score.json").read_text())["examples"] == 16  # the command's folder
    store = lr.verify(tmp_path / "score" / "store")
    assert isinstance(store, lr.ActivationStore) and len(store) == 16
    with pytest.raises(lr.UserError, match="no saved probe"):
        lr.score(tmp_path, pairs, tmp_path / "again")


@pytest.mark.slow
def test_train_returns_its_typed_summary(tiny_model_dir, tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"question {i}", "chosen": "paris is the capital", "rejected": "dog dog"} for i in range(6)],
    )
    summary = lr.train("sft", str(tiny_model_dir), pairs, tmp_path / "sft", config={"max_steps": 1, "max_length": 48})
    assert summary.method == "sft" and summary.steps == 1 and summary.pairs_or_examples == 6
    assert json.loads((tmp_path / "sft" / "latent_reward.json").read_text()) == summary.model_dump(mode="json")
