"""How a permutation p-value is printed: with B permutations (or random draws) the smallest p a test can give is
1 / (B + 1), and a p at that floor only says "this small or smaller"."""

from __future__ import annotations

import math


def p_text(p: float | None, permutations: int | None, name: str = "p") -> str:
    """ "p = 0.033", or "p <= 0.010" at the floor 1 / (B + 1) of B permutations; digits enough to show the floor."""
    if p is None or not math.isfinite(p):
        return f"{name} n/a"
    if not permutations:
        return f"{name} = {p:.3f}"
    floor = 1 / (permutations + 1)
    digits = max(3, math.ceil(-math.log10(floor) - 1e-9))
    if p <= floor * (1 + 1e-9):
        return f"{name} <= {floor:.{digits}f}"
    return f"{name} = {p:.{digits}f}"


def holm_text(p: float | None, p_holm: float | None, permutations: int | None) -> str:
    """ "Holm p = 0.120", or "Holm p <= 0.004" when the raw p was at its floor (the adjusted p is then a bound too)."""
    if p_holm is None or p is None:
        return "Holm p n/a"
    floor = 1 / (permutations + 1) if permutations else 0.0
    digits = max(3, math.ceil(-math.log10(floor) - 1e-9)) if floor else 3
    bound = "<=" if floor and p <= floor * (1 + 1e-9) else "="
    return f"Holm p {bound} {p_holm:.{digits}f}"
