"""The typer application the command modules register on, its own options (--version, --debug, completion), and the
app a call runs (`for_arguments`)."""

from __future__ import annotations

import copy
import os
import shlex
from collections.abc import Callable
from typing import Annotated, Any

import typer
import typer.main
from rich.console import Console
from typer.models import CommandInfo

from latent_reward import __version__

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Probe a chat model's residual stream for the reward it expects its responses to get.",
)
data_app = typer.Typer(no_args_is_help=True, help="Look at rated data before using it.")
app.add_typer(data_app, name="data")
console = Console()
COMPLETE = "_LATENT_REWARD_COMPLETE"  # set when a shell's completion script calls the program


def _show_version(value: bool) -> None:
    if value:
        console.print(f"latent-reward {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="On an unexpected error, show the whole traceback (also LATENT_REWARD_DEBUG=1); works "
            "before or after the command.",
        ),
    ] = False,
) -> None:
    """Probe a chat model's residual stream for the reward it expects its responses to get."""
    # --debug is read (and removed from the arguments) by cli.errors.run_app before typer parses them; it is declared
    # here so that --help lists it.


def for_arguments(typer_app: typer.Typer, argv: list[str]) -> typer.Typer:
    """The app with every command but the one `argv` names standing in as its name and help alone.

    typer works out the options of every command on every call, and a command's options come from configs whose
    modules load torch (cli/fields.py): built whole, `latent-reward --help` or a shell completion would load it.
    A stand-in lists the command in --help as the command itself would."""
    words = argv
    if not words and COMPLETE in os.environ:  # a shell asks for completions: the words typed so far (bash, others)
        words = shlex.split(os.environ.get("COMP_WORDS") or os.environ.get("_TYPER_COMPLETE_ARGS") or "")[1:]
    named = next((word for word in words if not word.startswith("-")), None)
    return _standing_in(typer_app, keep=named)


def _standing_in(typer_app: typer.Typer, keep: str | None) -> typer.Typer:
    out = copy.copy(typer_app)
    out.registered_commands = []
    for info in typer_app.registered_commands:
        out.registered_commands.append(info if _command_name(info) == keep else _stand_in(info))
    out.registered_groups = []
    for group in typer_app.registered_groups:
        kept = copy.copy(group)
        if group.name != keep and group.typer_instance is not None:
            kept.typer_instance = _standing_in(group.typer_instance, keep=None)
        out.registered_groups.append(kept)
    return out


def _callback(info: CommandInfo) -> Callable[..., Any]:
    if info.callback is None:
        raise TypeError(f"command {info.name!r} has no function")
    return info.callback


def _command_name(info: CommandInfo) -> str:
    return info.name or typer.main.get_command_name(_callback(info).__name__)


def _stand_in(info: CommandInfo) -> CommandInfo:
    def stand_in() -> None:
        raise AssertionError("a stand-in command is never run")

    stand_in.__name__, stand_in.__doc__ = _callback(info).__name__, _callback(info).__doc__
    out = copy.copy(info)
    out.callback = stand_in
    return out
