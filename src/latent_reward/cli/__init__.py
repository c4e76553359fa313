"""The `latent-reward` command line: each command parses options into a workflow's config and prints its result.

Commands live in `core` (extraction, probes, reports), `research` (respond, judge, steer, conversation),
`training` (train) and `rerun`; their options come from the configs' fields (`fields`, on the option groups of
`groups`), and `options` and `choices` hold the rest of the shared vocabulary; `renames` the old option names still
accepted, `errors` the one error path, `show` what the commands print. A call builds only the command it runs
(`app.for_arguments`): the configs' modules load torch.
"""

from __future__ import annotations

import sys

from latent_reward.cli import core, rerun, research, training  # noqa: F401  (importing registers the commands)
from latent_reward.cli.app import app, for_arguments
from latent_reward.cli.errors import run_app
from latent_reward.cli.renames import translate


def main(argv: list[str] | None = None) -> None:
    arguments = translate(list(sys.argv[1:] if argv is None else argv))
    run_app(for_arguments(app, arguments), arguments)
