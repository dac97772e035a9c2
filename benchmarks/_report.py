"""Shared by the benchmark scripts: print a result table and keep it (atomically) in results/."""

from __future__ import annotations

import os


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
