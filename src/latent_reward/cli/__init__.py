"""The `latent-reward` command line: each command parses options into a workflow's config and prints its result.

Commands live in `core` (extraction, probes, reports), `research` (respond, judge, steer, conversation),
`training` (train) and `rerun`; `options` and `choices` are the shared vocabulary, `renames` the old option names
still accepted, `errors` the one error path, `show` what the commands print.
"""

from __future__ import annotations

import sys

from latent_reward.cli import core, rerun, research, training  # noqa: F401  (importing registers the commands)
from latent_reward.cli.app import app
from latent_reward.cli.errors import run_app
from latent_reward.cli.renames import translate


def main(argv: list[str] | None = None) -> None:
    run_app(app, translate(list(sys.argv[1:] if argv is None else argv)))
