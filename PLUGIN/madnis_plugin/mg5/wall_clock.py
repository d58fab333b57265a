"""Where a MadNIS launch's wall time went, printed as one line at its end, phase by phase.

Why: a launch is a pipeline of MadEvent's steps (the Source compilation, the helicity recycling) and MadNIS's (job
preparation with the bridge builds, training jobs, generation jobs, merging and writing the events, plots, MadEvent's
results pages), and which of them sets the wall time differs by process: on ``p p > t t~ j`` at 10k events the
compilation and helicity steps take about as long as training, on ``g g > w+ d u~ g`` training and generation
dominate. The line tells a user where a long launch spends its time, and ``benchmarks/mg5_vs_madnis.py`` records
it for every launch it measures.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

LINE_START = "MadNIS wall time"


class WallClock:
    """Wall seconds per phase: :meth:`mark` gives the time since the previous mark to a phase (adding up)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.start = self.last = clock()
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = self.clock()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now

    def line(self) -> str:
        """``MadNIS wall time T s: phase t s, ...`` (the phases in the order they first ended)."""
        parts = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.phases.items())
        return f"{LINE_START} {self.last - self.start:.1f} s: {parts}"


def parse_line(text: str) -> dict[str, float]:
    """``{"total": T, phase: t, ...}`` from the last wall-time line in a launch's output (empty where it printed none)."""
    lines = [line[line.index(LINE_START) :] for line in text.splitlines() if LINE_START in line]
    if not lines:
        return {}
    head, _, phases = lines[-1].partition(": ")
    total = re.search(r"([\d.]+) s$", head)
    parsed = {name: float(seconds) for name, seconds in re.findall(r"(\w[\w ,-]*?) ([\d.]+) s", phases)}
    return ({"total": float(total.group(1))} if total else {}) | parsed
