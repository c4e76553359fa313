"""Optional dependencies (trl, peft, openai, gguf) are imported only where they are used; without one, the command
that needs it says in one line which extra installs it."""

import subprocess
import sys

import pytest

from helpers import cli, write_jsonl
from latent_reward.errors import UserError
from latent_reward.extras import EXTRAS, require

# what an install without the extras looks like
BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_a_missing_optional_dependency_names_its_extra(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=rf"pip install 'latent-reward\[{EXTRAS[module]}\]'"):
        require(module)


@pytest.mark.slow
def test_every_module_imports_without_the_extras():
    code = BLOCK.format(names=sorted(EXTRAS)) + (
        "import importlib, pkgutil, latent_reward\n"
        "names = [m.name for m in pkgutil.walk_packages(latent_reward.__path__, 'latent_reward.')\n"
        "         if not m.name.endswith('__main__')]  # running it would start the command line\n"
        "for name in names:\n    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 80  # every module of the package was imported


@pytest.fixture
def arena(tmp_path):
    return write_jsonl(tmp_path / "a.jsonl", [{"question": f"q{i}", "answer": f"a{i}", "score": i} for i in range(4)])


def test_judge_without_openai_is_one_line_naming_the_judge_extra(arena, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    result = cli("judge", "--data", arena, "--out", tmp_path / "o", "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: openai is not installed; install the judge extra: pip install 'latent-reward[judge]'"
    )


def test_train_without_trl_fails_before_loading_a_model(arena, tmp_path, monkeypatch):
    import latent_reward.models.loading as loading

    monkeypatch.setitem(sys.modules, "trl", None)
    monkeypatch.setattr(loading, "load_model", lambda *args, **kwargs: pytest.fail("a model was loaded"))
    result = cli("train", "sft", "--data", arena, "--model", "any-model", "--out", tmp_path / "o")
    assert result.returncode == 2 and "pip install 'latent-reward[train]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
