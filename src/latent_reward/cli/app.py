"""The typer application the command modules register on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Probe a chat model's residual stream for the reward it expects its responses to get.")
data_app = typer.Typer(no_args_is_help=True, help="Look at rated data before using it.")
app.add_typer(data_app, name="data")
console = Console()
