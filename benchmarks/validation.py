"""Physics validation: MadNIS against MadEvent on processes chosen to break a wrong channel decomposition.

For each process (identical final-state particles, mirrors, several P-dirs, s-channel resonances, coupling
restrictions): ``output madnis`` once, then on the same directory and cards
1. a stock launch (``madnis = False``, survey/refine as a user runs it),
2. MadEvent converged: MadEvent's own ``madevent`` re-run in every ``G*`` channel of that launch with
   ``--points`` points in the first of ``--iterations`` iterations (MadEvent doubles them each iteration),
   summed with the symfact multiplicities.
   A stock launch stops refining once its error target is met; in channels whose weights have a long tail
   (poorly mapped t-channel configs) its estimate is then low by more than its quoted error (measured on
   ``u d~ > w+ z z``: one channel 6 % low, the total 1 %). This column is the reference for the pulls.
3. a MadNIS launch (``madnis = True``, ``madnis_steps = --steps``).
Writes ``benchmarks/results/validation.json`` (rows with sigma, errors and pulls) and ``validation.md``.

    python benchmarks/validation.py "u d~ > w+ z z" "u u~ > z z" "p p > e+ e-" --nevents 10000

Needs MG5aMC (MG5AMC_HOME or /opt/mg5amc), gfortran and the plugin installed (madnis-mg5 install-plugin).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from madnis_plugin.install import mg5_home

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mg5_vs_madnis import RESULTS, RunFailed, madnis, process_directories, stock  # noqa: E402


@dataclass
class ChannelResult:
    """One MadEvent ``G*`` channel: the stock launch's result and the converged re-run's."""

    channel: str
    multiplicity: int
    stock: float
    stock_error: float
    converged: float
    converged_error: float


def g_channels(pdir: Path) -> list[tuple[str, int]]:
    """(G directory tag, multiplicity) of the channels MadEvent integrates, from ``symfact.dat``."""
    channels = []
    for line in (pdir / "symfact.dat").read_text().split("\n"):
        if line.split() and int(line.split()[1]) > 0:
            channels.append((line.split()[0], int(line.split()[1])))
    return channels


def converged_channel(pdir: Path, tag: str, points: int, iterations: int) -> tuple[float, float]:
    """MadEvent's ``madevent`` in a fresh copy of channel ``G<tag>``: cross section and error (pb)."""
    work = pdir / f"G{tag}_validation"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    # events per iteration, max and min iterations; accuracy; adjustable grid; single-diagram enhancement;
    # exact helicity sum; channel (as the G directory names it)
    (work / "input.txt").write_text(f"{points} {iterations} {iterations}\n0.0001\n2\n1\n0\n{tag}\n")
    with (work / "input.txt").open() as stdin:
        done = subprocess.run(["../madevent"], cwd=work, stdin=stdin, capture_output=True, text=True)
    (work / "madevent.log").write_text(done.stdout + done.stderr)
    fields = (work / "results.dat").read_text().split()
    return float(fields[0]), float(fields[1])


def madevent_converged(
    directory: Path, points: int, iterations: int, known: dict[str, tuple[float, float]], jobs: int = 1
) -> list[ChannelResult]:
    """Every channel of the directory's last stock launch, re-integrated by MadEvent with more points, ``jobs``
    channels at a time (each its own ``madevent`` process).

    ``known`` maps channel names to converged results measured before (see ``--reuse-converged``); those
    channels are not re-run.
    """

    def channel(pdir: Path, tag: str, multiplicity: int) -> ChannelResult:
        stock_fields = (pdir / f"G{tag}" / "results.dat").read_text().split()
        name = f"{pdir.name}/G{tag}"
        sigma, error = known[name] if name in known else converged_channel(pdir, tag, points, iterations)
        result = ChannelResult(name, multiplicity, float(stock_fields[0]), float(stock_fields[1]), sigma, error)
        print(f"  {result}", flush=True)
        return result

    channels = [
        (pdir, tag, multiplicity)
        for pdir in sorted((directory / "SubProcesses").glob("P*"))
        for tag, multiplicity in g_channels(pdir)
    ]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda c: channel(*c), channels))


def total(channels: list[ChannelResult], which: str) -> tuple[float, float]:
    sigma = sum(c.multiplicity * getattr(c, which) for c in channels)
    error = sum((c.multiplicity * getattr(c, f"{which}_error")) ** 2 for c in channels) ** 0.5
    return sigma, error


def pull(a: tuple[float, float], b: tuple[float, float]) -> float:
    """(a - b) / combined error; 0 for two exact zeros (a channel that no subprocess feeds, e.g. q q~ > g g's G1)."""
    error = (a[1] ** 2 + b[1] ** 2) ** 0.5
    return (a[0] - b[0]) / error if error > 0 else 0.0 if a[0] == b[0] else float("inf")


def earlier_rows() -> list[dict]:
    path = RESULTS / "validation.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def known_converged(process: str) -> tuple[dict[str, tuple[float, float]], str]:
    """The converged per-channel results of ``process``'s earlier row, and the date they were measured.

    The converged reference is MadEvent's alone (same MG5aMC, cards and channels), so it does not change
    with this project's code; re-measuring it costs most of a validation run.
    """
    for row in earlier_rows():
        if row["process"] == process:
            known = {c["channel"]: (c["converged"], c["converged_error"]) for c in row["channels"]}
            return known, row.get("converged_date", row["date"])
    return {}, ""


def merged_rows(rows: list[dict], command: str) -> list[dict]:
    """The rows of validation.json with this run's rows added (replacing earlier rows of the same process)."""
    stamp = {
        "command": command,
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)",
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    }
    earlier = earlier_rows()
    new = {row["process"] for row in rows}
    return [row for row in earlier if row["process"] not in new] + [{**row, **stamp} for row in rows]


def write_outputs(rows: list[dict]) -> Path:
    """validation.json and validation.md from all rows (each with the command, machine and date that made it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "validation.json").write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    lines = [
        "# Validation: MadNIS vs MadEvent",
        "",
        *[
            f"- `{row['process']}`: `{row['command']}` ({row['machine']}, {row['date']})"
            + (f"; MadEvent converged reference measured {row['converged_date']}" if "converged_date" in row else "")
            + (f"; note: {row['note']}" if row.get("note") else "")
            for row in rows
        ],
        "- reference: MadEvent converged (each G channel of the stock launch re-run by MadEvent's own `madevent`",
        "  with more points and iterations; see the script's docstring for why the stock launch is not the reference)",
        "",
        "| process | stock launch [pb] | MadEvent converged [pb] | MadNIS [pb] | pull MadNIS vs converged "
        "| pull stock vs converged | pull MadNIS vs stock |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['process']}` | {row['stock'][0]:.5g} +- {row['stock'][1]:.2g} "
            f"| {row['converged'][0]:.5g} +- {row['converged'][1]:.2g} "
            f"| {row['madnis'][0]:.5g} +- {row['madnis'][1]:.2g} | {row['pull_madnis_converged']:+.1f} "
            f"| {row['pull_stock_converged']:+.1f} | {row['pull_madnis_stock']:+.1f} |"
        )
    lines += ["", "Per channel (stock launch vs converged, pb):", ""]
    lines += ["| process | channel | multiplicity | stock | converged | pull |", "|---|---|---|---|---|---|"]
    for row in rows:
        for c in row["channels"]:
            p = pull((c["stock"], c["stock_error"]), (c["converged"], c["converged_error"]))
            lines.append(
                f"| `{row['process']}` | {c['channel']} | {c['multiplicity']} | {c['stock']:.5g} +- "
                f"{c['stock_error']:.2g} | {c['converged']:.5g} +- {c['converged_error']:.2g} | {p:+.1f} |"
            )
    table = RESULTS / "validation.md"
    table.write_text("\n".join(lines) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("processes", nargs="+", help='MG5aMC process definitions, e.g. "u d~ > w+ z z"')
    parser.add_argument("--nevents", type=int, default=10000)
    parser.add_argument("--steps", default="auto", help="madnis_steps")
    parser.add_argument(
        "--points",
        type=int,
        default=50000,
        help="MadEvent converged: points of the first iteration (doubled each iteration)",
    )
    parser.add_argument("--iterations", type=int, default=8, help="MadEvent converged: iterations")
    parser.add_argument("--jobs", type=int, default=1, help="MadEvent converged: channels run at a time")
    parser.add_argument("--mg5", type=Path, default=mg5_home())
    parser.add_argument("--keep", action="store_true", help="keep the process directories")
    parser.add_argument(
        "--reuse-converged",
        action="store_true",
        help="take MadEvent's converged per-channel results from validation.json's earlier row of the process",
    )
    args = parser.parse_args(argv)
    rows = []
    for process, directory in process_directories(args.mg5, args.processes, "validation_", args.keep):
        try:
            known, converged_date = known_converged(process) if args.reuse_converged else ({}, "")
            s = stock(directory, args.nevents)
            channels = madevent_converged(directory, args.points, args.iterations, known, args.jobs)
            m = madnis(directory, args.nevents, args.steps)
        except RunFailed as error:
            print(f"{process}: FAILED {error}", flush=True)
            continue
        converged = total(channels, "converged")
        row = {
            "process": process,
            "stock": [s.sigma, s.error],
            "converged": list(converged),
            "madnis": [m.sigma, m.error],
            "pull_madnis_converged": pull((m.sigma, m.error), converged),
            "pull_stock_converged": pull((s.sigma, s.error), converged),
            "pull_madnis_stock": pull((m.sigma, m.error), (s.sigma, s.error)),
            "channels": [asdict(c) for c in channels],
            **({"converged_date": converged_date} if converged_date else {}),
        }
        print(json.dumps({k: v for k, v in row.items() if k != "channels"}), flush=True)
        rows.append(row)
    command = "python benchmarks/validation.py " + " ".join(
        [f'"{p}"' for p in args.processes]
        + [f"--nevents {args.nevents}", f"--steps {args.steps}", f"--points {args.points}"]
        + [f"--iterations {args.iterations}"]
        + ([f"--jobs {args.jobs}"] if args.jobs > 1 else [])
        + (["--reuse-converged"] if args.reuse_converged else [])
    )
    print(write_outputs(merged_rows(rows, command)).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
