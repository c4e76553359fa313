"""The fixed choices of the options no config holds, as enums, so that typer lists them in --help and refuses anything
else (the configs' choices are Literals, which typer lists from the config).

The values mirror the library's own lists (tests/test_cli_vocabulary.py checks that they agree); they are written out
here because importing those modules would load torch before a command runs.
"""

from __future__ import annotations

from enum import StrEnum


class Dtype(StrEnum):
    """A model's precision (models.loading.DTYPES, and auto: models.devices.resolve_dtype)."""

    auto = "auto"
    bfloat16 = "bfloat16"
    float32 = "float32"
    float16 = "float16"
