"""The typer application the command modules register on, and its own options (--version, --debug, completion)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

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
