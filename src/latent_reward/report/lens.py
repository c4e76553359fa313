"""The "reward lens": response tokens colored by the probe's estimate (for HTML templates and the terminal)."""

from __future__ import annotations

import numpy as np


def color(value: float, low: float, high: float) -> tuple[int, int, int]:
    """Red (low estimate) through white to green (high estimate)."""
    t = 0.5 if high <= low else float(np.clip((value - low) / (high - low), 0, 1))
    if t < 0.5:
        k = t / 0.5
        return 230, int(120 + 135 * k), int(120 + 135 * k)
    k = (t - 0.5) / 0.5
    return int(255 - 135 * k), int(255 - 25 * k), int(255 - 135 * k)


def colored_tokens(tokens: list[str], estimates: list[float], low: float, high: float) -> list[dict]:
    """One dict per token (text, css rgb, value) for the lens macro in templates/lens.html.j2."""
    return [{"text": token, "rgb": "rgb({},{},{})".format(*color(value, low, high)), "value": f"{value:.2f}"}
            for token, value in zip(tokens, estimates)]
