"""The "reward lens": response tokens colored by the probe's estimate (for HTML templates and the terminal)."""

from __future__ import annotations

import numpy as np

# The light ends of ColorBrewer's PuOr diverging scheme (orange for low, purple for high): safe for the common forms of
# colour blindness, unlike red-green, and light enough that black token text stays readable on either end.
_LOW, _MIDDLE, _HIGH = np.array([253, 184, 99]), np.array([255, 255, 255]), np.array([178, 171, 210])


def color(value: float, low: float, high: float) -> tuple[int, int, int]:
    """Orange (low estimate) through white to purple (high estimate)."""
    t = 0.5 if high <= low else float(np.clip((value - low) / (high - low), 0, 1))
    end, k = (_LOW, 1 - t / 0.5) if t < 0.5 else (_HIGH, (t - 0.5) / 0.5)
    r, g, b = np.rint(_MIDDLE + k * (end - _MIDDLE)).astype(int)
    return int(r), int(g), int(b)


def colored_tokens(tokens: list[str], estimates: list[float], low: float, high: float) -> list[dict]:
    """One dict per token (text, css rgb, value) for the lens macro in templates/lens.html.j2."""
    return [
        {"text": token, "rgb": "rgb({},{},{})".format(*color(value, low, high)), "value": f"{value:.2f}"}
        for token, value in zip(tokens, estimates)
    ]
