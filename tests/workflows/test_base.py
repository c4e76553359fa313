"""The job skeleton (workflows/base.py): the folder prepared and held, the timings, the result file and run.json,
and one return shape for every workflow."""

import json
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest

from latent_reward.config import Spec
from latent_reward.errors import UserError
from latent_reward.evaluation.results import Result
from latent_reward.io import atomic_write_text
from latent_reward.workflows.base import Outcome, start


class DemoJob(Spec):
    out: Path
    size: int = 3


class Answer(Result):
    value: float


def test_finish_writes_the_result_and_run_json_and_returns_the_named_files(tmp_path):
    job = DemoJob(out=tmp_path / "o")
    with start("demo", job, job.out, "demo job") as folder:
        with folder.timed("step"):
            page = atomic_write_text(folder.path / "page.html", "<p>done</p>")
        outcome = folder.finish(Answer(value=0.5), "answer.json", files={"table": None}, report=page)
    assert json.loads((job.out / "answer.json").read_text()) == {"value": 0.5}
    record = json.loads((job.out / "run.json").read_text())
    assert record["command"] == "demo" and record["config"] == {"out": str(job.out), "size": 3}
    assert set(record["timings_seconds"]) == {"step", "total"} and record["versions"]
    assert outcome.result == Answer(value=0.5) and outcome.folder == job.out and outcome.report == page
    assert outcome.files == {"report": page, "results": job.out / "answer.json", "run": job.out / "run.json"}
    assert outcome.timings["total"] >= outcome.timings["step"] > 0  # a file given as None is left out, not listed


def test_a_second_writer_is_refused_while_a_job_holds_the_folder_and_let_in_after(tmp_path):
    job = DemoJob(out=tmp_path / "o")
    with start("demo", job, job.out, "demo job"):
        with pytest.raises(UserError, match="another process is writing the demo job in"):
            with start("demo", job, job.out, "demo job"):
                pass
    with start("demo", job, job.out, "demo job") as folder:
        assert folder.finish(Answer(value=1.0)).files["results"] == job.out / "results.json"


def test_a_file_is_no_folder_a_writer_owned_folder_is_only_checked_and_no_folder_writes_nothing(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    for what in ("demo job", None):
        with pytest.raises(UserError, match="is an existing file, not a folder"):
            with start("demo", DemoJob(out=file), file, what):
                pass
    with start("demo", DemoJob(out=tmp_path / "later"), tmp_path / "later") as folder:
        assert not folder.path.exists()  # the job's own writer creates and locks it (an extraction: the store)
        folder.path.mkdir()
        assert folder.finish(Answer(value=2.0), results=None).files == {"run": tmp_path / "later" / "run.json"}
    with start("demo", None, None) as folder:
        outcome = folder.finish(Answer(value=3.0))
    assert outcome.folder is None and outcome.files == {} and "total" in outcome.timings


def test_every_workflow_returns_an_outcome():
    from latent_reward.workflows import (
        compare,
        conversation,
        extract,
        generate,
        judge,
        prompt_only,
        respond,
        run,
        score,
        steer,
        train,
    )

    workflows = [
        run.run,
        run.sweep_stores,
        extract.run_extract,
        prompt_only.run_prompt_only,
        score.run_score,
        respond.run_respond,
        judge.run_judge,
        steer.run_steer,
        conversation.run_conversation,
        train.run_train,
        compare.run_compare,
        generate.run_generate,
    ]
    assert [get_origin(get_type_hints(w)["return"]) for w in workflows[1:]] == [Outcome] * 11
    # run: None in the helper processes of `accelerate launch` (they extract their shards; the first one reports)
    assert [get_origin(a) for a in get_args(get_type_hints(run.run)["return"])] == [Outcome, None]


def test_run_json_records_the_source_commit_read_when_the_job_started(tmp_path, monkeypatch):
    """From a git checkout, run.json names the commit (and whether tracked files were modified) as it was when the job
    started, not when it finished: a long job runs the code it imported at its start."""
    import latent_reward.workflows.base as base

    states = iter([{"commit": "a" * 40, "modified": False}, {"commit": "b" * 40, "modified": True}])
    monkeypatch.setattr(base, "source_revision", lambda: next(states))
    job = DemoJob(out=tmp_path / "o")
    with start("demo", job, job.out, "demo job") as folder:
        base.source_revision()  # the checkout moves on while the job runs
        folder.finish(Answer(value=0.5))
    assert json.loads((job.out / "run.json").read_text())["source"] == {"commit": "a" * 40, "modified": False}


def test_the_source_revision_is_this_checkouts_head_or_none_outside_a_checkout(tmp_path, monkeypatch):
    import subprocess

    from latent_reward import io

    revision = io.source_revision()
    package = Path(io.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    if head.returncode == 0:  # the tests run from a checkout (CI's clean clone included)
        assert revision is not None and revision["commit"] == head.stdout.strip()
    monkeypatch.setenv("PATH", str(tmp_path))  # no git to call
    assert io.source_revision() is None


def test_a_copy_inside_some_other_repository_is_not_that_repositorys_code(tmp_path, monkeypatch):
    """A package installed (copied) into a folder that some git repository holds but does not track, as a virtual
    environment inside a project: its revision is unknown, not the surrounding repository's commit."""
    import shutil
    import subprocess

    from latent_reward import io

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    copy = tmp_path / "venv" / "latent_reward"
    copy.mkdir(parents=True)
    shutil.copy(io.__file__, copy / "io.py")
    monkeypatch.setattr(io, "__file__", str(copy / "io.py"))
    assert io.source_revision() is None
