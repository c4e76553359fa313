"""`latent-reward rerun FOLDER`: the command that made a result folder, again, from its run.json."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from latent_reward.cli.app import app, console


@app.command()
def rerun(
    folder: Annotated[Path, typer.Argument(help="A result folder with the run.json its command wrote.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: FOLDER-rerun).")] = None,
) -> None:
    """Replay a result folder exactly: its command with the configuration in its run.json, into another folder."""
    from latent_reward.workflows.replay import recorded

    target = out or folder.resolve().with_name(folder.resolve().name + "-rerun")  # resolved: FOLDER may be "."
    replay = recorded(folder, target)
    for package, (then, now) in replay.version_changes.items():
        print(
            f"warning: {folder} was made with {package} {then or 'absent'}, installed now: {now or 'absent'}; "
            "numbers may differ",
            file=sys.stderr,
        )
    replay.run()
    console.print(f"replayed {replay.command} from {folder / 'run.json'} into {target}")
