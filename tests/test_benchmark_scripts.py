"""The analysis benchmark runs end to end at a tiny shape: its synthetic store is written through the store's writer,
and the analysis recovers the planted signal (the figures in docs/performance.md come from this script)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "analysis_scaling.py"


@pytest.mark.slow
def test_the_analysis_benchmark_recovers_its_planted_signal():
    command = [sys.executable, str(SCRIPT), "--n", "300", "--d", "24", "--layers", "4", "--n-boot", "100"]
    command += ["--permutations", "5", "--split-seeds", "2"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600).stdout
    last = output.strip().splitlines()[-1]
    pattern = r"analysis total: ([\d.]+) s, peak ([\d.]+) GB, recovered r ([\d.-]+) \(exact ([\d.-]+)\)"
    match = re.fullmatch(pattern, last)
    assert match, last
    recovered, exact = float(match.group(3)), float(match.group(4))
    assert recovered > 0.5  # the planted response-level signal caps r at 0.78
    assert abs(recovered - exact) < 0.01  # narrow states: the analysis's fit is the exact float64 ridge
