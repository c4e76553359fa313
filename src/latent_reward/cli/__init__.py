"""The `latent-reward` command line: each command parses options into a workflow's config and prints its result.

Commands live in `core` (extraction, probes, reports) and `research` (respond, judge, steer, conversation, train);
`errors` is the one error path, `show` what the commands print.
"""

from __future__ import annotations

from latent_reward.cli import core, research  # noqa: F401  (importing registers the commands)
from latent_reward.cli.app import app
from latent_reward.cli.errors import run_app


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv)
