"""Options renamed in 0.3 so that one name means one thing in every command; the old names work until 0.4, with a
warning. They are translated here, before typer parses the arguments, so no command carries hidden duplicates."""

from __future__ import annotations

import sys

# command -> {old option: the arguments it becomes}
RENAMED: dict[str, dict[str, tuple[str, ...]]] = {
    "judge": {
        "--model": ("--endpoint-model",),
        "-m": ("--endpoint-model",),
        "--max-tokens": ("--max-new-tokens",),
        "--json-mode": ("--structured",),
        "--no-json-mode": ("--no-structured",),
    },
    "respond": {"--api-model": ("--endpoint-model",)},
    "steer": {
        "--judge-url": ("--judge", "--base-url"),
        "--judge-model": ("--endpoint-model",),
        "--positions": ("--scope",),
    },
    "train": {"--max-length": ("--max-tokens",), "--max-completion-length": ("--max-new-tokens",)},
}
REMOVED_IN = "0.4"


def translate(argv: list[str]) -> list[str]:
    """`argv` with the command's renamed options replaced by their new names (a warning on stderr for each)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    renamed = RENAMED.get(command or "", {})
    out: list[str] = []
    for index, argument in enumerate(argv):
        if argument == "--":
            return out + argv[index:]
        name, equals, value = argument.partition("=")
        new = renamed.get(name) if name.startswith("-") else None
        if new is None:
            out.append(argument)
            continue
        print(f"warning: {command} {name} is now {' '.join(new)}; the old name goes in {REMOVED_IN}", file=sys.stderr)
        out += [*new[:-1], new[-1] + equals + value]
    return out
