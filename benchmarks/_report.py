"""Shared by the benchmark scripts: print a result table and keep it (atomically) in results/; time things in
fresh processes, alternating."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fresh_process(code: str, *args: str) -> str:
    """The standard output of ``python -c code args...`` in a new process; ``{root}`` in ``code`` is the repository."""
    return subprocess.run([sys.executable, "-c", code.format(root=str(ROOT)), *args], capture_output=True, text=True,
                          check=True).stdout


def seconds_and_count(stdout: str) -> tuple[float, int]:
    """``(seconds, count)`` from a child's ``SECONDS <seconds> <count>`` line."""
    line = next(l for l in stdout.splitlines() if l.startswith("SECONDS"))
    return float(line.split()[1]), int(line.split()[2])


def alternating(ways, repeats: int, measure) -> dict:
    """``{way: [measure(way), ...]}``, the ways taken in turn ``repeats`` times: a shared machine's load drifts, and
    each way then sees as much of it."""
    results = {way: [] for way in ways}
    for _ in range(repeats):
        for way in ways:
            results[way].append(measure(way))
    return results


def seconds_cells(seconds) -> str:
    """Median, min and max of ``seconds``, as the columns ``median s``, ``min s``, ``max s``."""
    return f"{statistics.median(seconds):>10.2f}{min(seconds):>8.2f}{max(seconds):>8.2f}"


def machine_line() -> str:
    """``os.cpu_count() N | load average a, b, c``: what a table's numbers depend on, on a shared machine."""
    return f"os.cpu_count() {os.cpu_count()} | load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"


def emit(lines: list[str], out: str | None, *, skip: int = 2) -> None:
    """Print ``lines[skip:]`` (the header lines were printed already), then write all of them to ``out``
    through a temporary file, with the load average appended (these machines are shared)."""
    lines = lines + [f"load average now {', '.join(f'{v:.2f}' for v in os.getloadavg())}"]
    for text in lines[skip:]:
        print(text, flush=True)
    if out:
        with open(out + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(out + ".tmp", out)
