"""The "reward lens": response tokens colored by the probe's estimate (HTML and terminal)."""

from __future__ import annotations

import html

import numpy as np


def color(value: float, low: float, high: float) -> tuple[int, int, int]:
    """Red (low estimate) through white to green (high estimate)."""
    t = 0.5 if high <= low else float(np.clip((value - low) / (high - low), 0, 1))
    if t < 0.5:
        k = t / 0.5
        return 230, int(120 + 135 * k), int(120 + 135 * k)
    k = (t - 0.5) / 0.5
    return int(255 - 135 * k), int(255 - 25 * k), int(255 - 135 * k)


def lens_html(tokens: list[str], estimates: list[float], low: float, high: float) -> str:
    spans = []
    for token, value in zip(tokens, estimates):
        r, g, b = color(value, low, high)
        text = html.escape(token).replace("\n", "&#8629;<br>")
        spans.append(f'<span title="{value:.2f}" style="background:rgb({r},{g},{b})">{text}</span>')
    return '<div style="font-family:monospace;white-space:pre-wrap;line-height:1.6">' + "".join(spans) + "</div>"


def lens_page(title: str, items: list[dict], low: float, high: float) -> str:
    """A standalone HTML page: one block per item with `tokens`, `estimates` and an optional `caption`."""
    blocks = "".join(f"<h3>{html.escape(item.get('caption', ''))}</h3>{lens_html(item['tokens'], item['estimates'], low, high)}"
                     for item in items)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font:15px system-ui;max-width:960px;margin:2em auto'><h1>{html.escape(title)}</h1>"
            f"<p>Each token's background is the probe's estimate at that token (hover for the value): red low, green high "
            f"(scale {low:.2f} to {high:.2f}).</p>{blocks}</body></html>")
