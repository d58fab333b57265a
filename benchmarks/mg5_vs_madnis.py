"""Stock MadEvent (survey/refine) vs MadNIS on the same ``output madnis`` directory, for given processes.

For each process: ``generate PROCESS; output madnis DIR`` once, then ``bin/generate_events`` twice on the
same directory and cards, with ``madnis = False`` (stock) and ``madnis = True``. Records cross section,
error, wall time, integrand points, unweighting efficiency and the points that stopped the Fortran
(isolated and zeroed by the bridge); writes
``benchmarks/results/mg5_vs_madnis.md`` and ``mg5_vs_madnis.png`` (with command, machine and date).

    python benchmarks/mg5_vs_madnis.py "p p > e+ e-" "g g > t t~ g" --nevents 10000 --steps 1000

Needs MG5aMC (MG5AMC_HOME or /opt/mg5amc), gfortran and the plugin installed (madnis-mg5 install-plugin).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    sigma: float
    error: float
    seconds: float
    points: int
    efficiency: float
    crashed: int = 0


def set_card(card: Path, **entries: object) -> None:
    text = card.read_text()
    for name, value in entries.items():
        text, n = re.subn(rf"^\s*\S+\s*=\s*{name}(\s)", rf"  {value} = {name}\1", text, flags=re.M)
        if n != 1:
            raise SystemExit(f"run_card has no entry {name}")
    card.write_text(text)


def output(mg5: Path, process: str, directory: Path) -> None:
    script = directory.parent / f"{directory.name}.mg5"
    script.write_text(f"set automatic_html_opening False\ngenerate {process}\noutput madnis {directory}\n")
    subprocess.run(
        [sys.executable, str(mg5 / "bin" / "mg5_aMC"), str(script)],
        check=True,
        capture_output=True,
        cwd=directory.parent,
    )  # MG5aMC leaves parser tables (py.py) in its working directory
    if not (directory / "SubProcesses" / "subproc.mg").exists():
        raise SystemExit(f"output madnis failed for {process!r} (is the plugin installed?)")


def process_directories(mg5: Path, processes: list[str], prefix: str, keep: bool) -> Iterator[tuple[str, Path]]:
    """(process, its fresh ``output madnis`` directory) in a temporary work directory, removed at the end
    unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"work directory: {work}", flush=True)
    try:
        for i, process in enumerate(processes):
            directory = work / f"proc{i}"
            output(mg5, process, directory)
            yield process, directory
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def launch(directory: Path, **entries: object) -> tuple[str, float]:
    """generate_events' output (also saved next to the directory, kept with --keep) and wall time."""
    set_card(directory / "Cards" / "run_card.dat", **entries)
    start = time.time()
    done = subprocess.run(
        [str(directory / "bin" / "generate_events"), "-f"],
        cwd=directory,
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    log = done.stdout + done.stderr
    (directory.parent / f"{directory.name}_madnis_{entries['madnis']}.log").write_text(log)
    return log, time.time() - start


class RunFailed(RuntimeError):
    """A launch printed no cross section; the message is MadEvent's error line."""


def cross_section(log: str) -> tuple[float, float]:
    found = re.findall(r"Cross-section :\s+([\d.eE+-]+) \+- ([\d.eE+-]+) pb", log)
    if not found:
        errors = [l.strip() for l in log.splitlines() if "Error" in l or "error" in l]
        raise RunFailed(errors[-1] if errors else log.strip().splitlines()[-1])
    return float(found[-1][0]), float(found[-1][1])


def stock(directory: Path, nevents: int) -> Measurement:
    log, seconds = launch(directory, madnis="False", nevents=nevents)
    sigma, error = cross_section(log)
    fields = (directory / "SubProcesses" / "results.dat").read_text().split()
    points = int(fields[3])
    return Measurement(sigma, error, seconds, points, nevents / points)


def madnis(directory: Path, nevents: int, steps: int) -> Measurement:
    log, seconds = launch(directory, madnis="True", nevents=nevents, madnis_steps=steps)
    sigma, error = cross_section(log)
    drawn = sum(int(m) for m in re.findall(r"events from (\d+) weighted points", log))
    points = sum(int(m) for m in re.findall(r"MadNIS: (\d+) matrix-element calls in all", log))
    crashed = sum(int(n) for n in re.findall(r"(\d+) of \d+ point\(s\) stopped the Fortran", log))
    return Measurement(sigma, error, seconds, points, nevents / drawn if drawn else 0.0, crashed)


def write_outputs(
    rows: list[tuple[str, Measurement, Measurement]], failures: list[str], command: str, notes: list[str]
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Stock MadEvent vs MadNIS (same `output madnis` directory, default cards)",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
        f"python {platform.python_version()}",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        *[f"- note: {note}" for note in notes],
        "",
        "| process | stock sigma [pb] | MadNIS sigma [pb] | pull | stock time [s] | MadNIS time [s] "
        "| stock points | MadNIS points | stock events/points | MadNIS events/weighted points "
        "| MadNIS points stopping the Fortran |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for process, s, m in rows:
        pull = (m.sigma - s.sigma) / (s.error**2 + m.error**2) ** 0.5
        lines.append(
            f"| `{process}` | {s.sigma:.4g} +- {s.error:.3g} | {m.sigma:.4g} +- {m.error:.3g} | {pull:+.1f} "
            f"| {s.seconds:.0f} | {m.seconds:.0f} | {s.points:,} | {m.points:,} | {100 * s.efficiency:.2f} % "
            f"| {100 * m.efficiency:.2f} % | {m.crashed:,} |"
        )
    lines += [f"| `{failure}` |" for failure in failures]
    lines += [
        "",
        "MadNIS points: every matrix-element call the run printed (training, integration and unweighting points, "
        "one per event record); "
        "stock points: the points counted in SubProcesses/results.dat (the refine's; the survey adds ~10 %).",
        "MadNIS events/weighted points counts the integration's points and whole weighted batches (20,000 "
        "points), so it is a lower bound on the unweighting efficiency.",
        "MadNIS points stopping the Fortran: points the bridge isolated after a MadEvent STOP or crash "
        "(set to zero weight, counted in its warnings).",
        "Wall times include compilation and share 2 cores with other jobs (noisy).",
        "",
    ]
    table = RESULTS / "mg5_vs_madnis.md"
    table.write_text("\n".join(lines))
    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(9, 3.4))
    x = range(len(rows))
    names = [p for p, _, _ in rows]
    ax_t.bar([i - 0.2 for i in x], [s.seconds for _, s, _ in rows], 0.4, label="stock MadEvent")
    ax_t.bar([i + 0.2 for i in x], [m.seconds for _, _, m in rows], 0.4, label="MadNIS")
    ax_t.set(ylabel="wall time [s]", title="launch wall time")
    ax_e.bar([i - 0.2 for i in x], [100 * s.efficiency for _, s, _ in rows], 0.4, label="stock: events / points")
    ax_e.bar([i + 0.2 for i in x], [100 * m.efficiency for _, _, m in rows], 0.4, label="MadNIS: unweighting eff.")
    ax_e.set(ylabel="%", title="efficiency")
    for ax in (ax_t, ax_e):
        ax.set_xticks(list(x), names, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "mg5_vs_madnis.png", dpi=110)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("processes", nargs="+", help='MG5aMC process definitions, e.g. "p p > e+ e-"')
    parser.add_argument("--nevents", type=int, default=10000)
    parser.add_argument("--steps", type=int, default=1000, help="madnis_steps")
    parser.add_argument("--mg5", type=Path, default=Path(os.environ.get("MG5AMC_HOME", "/opt/mg5amc")))
    parser.add_argument("--keep", action="store_true", help="keep the process directories and launch logs")
    parser.add_argument("--note", action="append", default=[], help="line for the results header (repeatable)")
    args = parser.parse_args(argv)
    rows, failures = [], []
    for process, directory in process_directories(args.mg5, args.processes, "mg5_vs_madnis_", args.keep):
        try:
            s = stock(directory, args.nevents)
            m = madnis(directory, args.nevents, args.steps)
        except RunFailed as error:
            failures.append(f"{process}` failed: `{error}")
            print(f"{process}: FAILED {error}", flush=True)
            continue
        print(f"{process}: stock {s}\n{' ' * len(process)}  MadNIS {m}", flush=True)
        rows.append((process, s, m))
    command = "python benchmarks/mg5_vs_madnis.py " + " ".join(
        [f'"{p}"' for p in args.processes] + [f"--nevents {args.nevents}", f"--steps {args.steps}"]
    )
    print(write_outputs(rows, failures, command, args.note).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
