"""Seconds to write an LHE file of N events on 1, 2, ... processes (``madnis_plugin.lhe.write_lhe``).

Why: the LHE file is written after every job has ended, so its formatting (Python) and compression (zlib) are the
tail of a large launch (100k ``p p > t t~ j`` events: ~2.9 s on one process). The launch writes it on its cores
(forked slices, one gzip member each). The records are t t~ j-like (5 particles, random numbers in the formats'
ranges): the cost of ``%`` formatting does not depend on the values. Each process count is timed in turn, repeated
(the shared cores are noisy: medians), and every file's text is checked to equal the one-process file's.

    python benchmarks/lhe_writing.py [--events 100000] [--processes 1 2] [--repeats 3]

Writes benchmarks/results/lhe_writing.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from madnis_plugin.lhe import Banner, EventRecords, LHEInit, LHEProcessInfo, write_lhe

RESULTS = Path(__file__).parent / "results"
PARTICLES = 5  # g g > t t~ g: two incoming gluons, t, t~, g


def ttj_like_records(n: int, seed: int = 0) -> EventRecords:
    """n events of t t~ j's shape: PDG codes, statuses, mothers, colours, momenta, helicities."""
    rng = np.random.default_rng(seed)
    records = EventRecords.empty(n, PARTICLES)
    records.nup[:] = PARTICLES
    records.subprocess[:] = 1
    records.pdg[:] = [21, 21, 6, -6, 21]
    records.status[:] = [-1, -1, 1, 1, 1]
    records.mothers[:, 2:] = [1, 2]
    records.color[:] = rng.integers(501, 505, (n, PARTICLES, 2))
    records.momenta[:] = rng.normal(0.0, 300.0, (n, PARTICLES, 5))
    records.momenta[..., 4] = [0.0, 0.0, 173.0, 173.0, 0.0]
    records.helicity[:] = rng.choice([-1, 1], (n, PARTICLES))
    records.scale[:] = rng.uniform(100.0, 1000.0, n)
    records.aqcd[:] = rng.uniform(0.09, 0.12, n)
    records.aqed[:] = 1 / 132.507
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="lhe_writing")
    args = parser.parse_args(argv)
    records = ttj_like_records(args.events)
    weights = np.full(args.events, 575.0)
    init = LHEInit([LHEProcessInfo(575.0, 0.5, 575.0, 1)])
    seconds: dict[int, list[float]] = {p: [] for p in args.processes}
    with tempfile.TemporaryDirectory() as work:
        texts: dict[int, bytes] = {}
        for _ in range(args.repeats):
            for processes in args.processes:
                path = Path(work) / f"events_{processes}.lhe.gz"
                start = time.perf_counter()
                write_lhe(path, records, weights, init, Banner(), processes)
                seconds[processes].append(time.perf_counter() - start)
                texts[processes] = gzip.open(path).read()
        same = all(text == texts[args.processes[0]] for text in texts.values())
    rows = [
        {"processes": p, "median_s": statistics.median(s), "seconds": s, "same_text": same} for p, s in seconds.items()
    ]
    command = (
        f"python benchmarks/lhe_writing.py --events {args.events} --processes "
        + " ".join(map(str, args.processes))
        + f" --repeats {args.repeats}"
    )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    header = {
        "command": command,
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)",
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "commit": commit,
        "events": args.events,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    base = rows[0]["median_s"]
    table = [
        f"| {r['processes']} | {r['median_s']:.2f} | {base / r['median_s']:.2f}x | "
        + " ".join(f"{x:.2f}" for x in r["seconds"])
        + " |"
        for r in rows
    ]
    (RESULTS / f"{args.output}.md").write_text(
        "\n".join(
            [
                "# Writing the LHE file on several processes (`madnis_plugin.lhe.write_lhe`)",
                "",
                f"- command: `{command}`",
                f"- machine: {header['machine']}; date: {header['date']}; commit {commit}",
                f"- {args.events} t t~ j-like events (5 particles), gzip level of the plugin; each process count timed in"
                " turn, repeated; every file's text equal to the one-process file's: " + ("yes" if same else "NO"),
                "",
                "| processes | median s | speed-up | seconds per repeat |",
                "|---|---|---|---|",
                *table,
                "",
            ]
        )
    )
    print("\n".join(table))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
