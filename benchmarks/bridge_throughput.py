"""Throughput of the Fortran bridge: bare Fortran call vs the Python API, and worker speed-up.

For each process (p p > e+ e-, g g > t t~ g, g g > w+ d u~ g; generated with MG5aMC into
--workdir unless already there) batches of --batch points with uniformly drawn channels and flat r
are evaluated through ``ProcessLibrary.evaluate``. "Fortran" is the time of the C call inside the
worker (``madnis_evaluate``), "API" the wall time of ``evaluate`` (transfer, sorting, checks).
Writes benchmarks/results/bridge_throughput.md.

    python benchmarks/bridge_throughput.py [--workdir DIR] [--batch 10000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from madnis_plugin.install import mg5_home

from fortran_bridge import ProcessLibrary

PROCESSES = {"p p > e+ e-": "dy", "g g > t t~ g": "ttg", "g g > w+ d u~ g": "wjj"}
RESULTS = Path(__file__).parent / "results" / "bridge_throughput.md"


def process_dirs(workdir: Path) -> dict[str, Path]:
    """SubProcesses/P* dir of each process, generating the missing ones with MG5aMC."""
    workdir.mkdir(parents=True, exist_ok=True)
    missing = [(p, n) for p, n in PROCESSES.items() if not (workdir / n / "SubProcesses").is_dir()]
    if missing:
        mg5 = mg5_home() / "bin" / "mg5_aMC"
        script = workdir / "generate.mg5"
        script.write_text("".join(f"generate {p}\noutput madevent {workdir / n} -nojpeg\n" for p, n in missing))
        subprocess.run([str(mg5), str(script)], cwd=workdir, check=True, capture_output=True)
    return {p: sorted((workdir / n / "SubProcesses").glob("P*"))[0] for p, n in PROCESSES.items()}


def time_batches(library: ProcessLibrary, batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """(API wall seconds, Fortran seconds) summed over the batches."""
    library.evaluate(*batches[0])  # warm-up: helicity filtering, first channel set-ups
    fortran_before = library.fortran_seconds
    start = time.perf_counter()
    for channel, r in batches:
        library.evaluate(channel, r)
    return time.perf_counter() - start, library.fortran_seconds - fortran_before


def _busy(_: int) -> float:
    start, total = time.perf_counter(), 0
    for i in range(5_000_000):
        total += i
    return time.perf_counter() - start


def machine_speedup() -> float:
    """Speed-up of two pure-Python busy loops in two processes over one: what the shared cores allow now."""
    import multiprocessing

    one = _busy(0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(abs, [0, 1])  # workers started
        start = time.perf_counter()
        pool.map(_busy, [0, 1])
        two = time.perf_counter() - start
    return 2 * one / two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "madnis_bridge_bench")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    rows = []
    for process, pdir in process_dirs(args.workdir).items():
        rng = np.random.default_rng(1)
        with ProcessLibrary(pdir, workers=1) as one:
            info = one.info
            batches = [
                (rng.integers(0, info.n_channels, args.batch), rng.random((args.batch, info.ndim)))
                for _ in range(args.repeats)
            ]
            api1, fortran1 = time_batches(one, batches)
        with ProcessLibrary(pdir, workers=2) as two:
            api2, _ = time_batches(two, batches)
        points = args.batch * args.repeats
        rows.append(
            (
                process,
                info.n_channels,
                info.ndim,
                points / fortran1,
                points / api1,
                100 * (api1 - fortran1) / fortran1,
                api1 / api2,
            )
        )
        print(rows[-1], flush=True)
    write_table(rows, args, machine_speedup())


def write_table(rows: list[tuple], args: argparse.Namespace, reference_speedup: float) -> None:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# Fortran bridge throughput",
        "",
        f"Command: `python benchmarks/bridge_throughput.py --batch {args.batch} --repeats {args.repeats}`  ",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, load average "
        f"{os.getloadavg()[0]:.1f} (the cores are shared with other jobs: numbers are noisy)",
        "",
        f"Batches of {args.batch} points, channels uniform, flat r, MG5aMC 3.5.7 default run_card (sm, nn23lo1,",
        "dynamical_scale_choice -1). Fortran = `madnis_evaluate` timed inside the worker; API = wall time",
        "of `ProcessLibrary.evaluate` (transfer to and from the worker, channel sorting, finite checks).",
        f"Reference: two busy-loop processes ran {reference_speedup:.2f}x as fast as one at the end of this run",
        "(the most any 2-worker speed-up could show on these shared cores at that moment).",
        "",
        "| process | channels | ndim | Fortran points/s (1 core) | API points/s (1 worker) | API overhead | speed-up 2 workers |",
        "|---|---|---|---|---|---|---|",
    ]
    for process, n_channels, ndim, fortran_rate, api_rate, overhead, speedup in rows:
        lines.append(
            f"| `{process}` | {n_channels} | {ndim} | {fortran_rate:,.0f} | {api_rate:,.0f} | "
            f"{overhead:.1f} % | {speedup:.2f}x |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
