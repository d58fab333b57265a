"""Pulls of whole MadNIS (or, with ``--stock``, stock MadEvent) launches over seeds against a reference cross section.

Why: one launch's pull says little (a benchmark run's ``g g > t t~ g`` came out +2.8 sigma against MadEvent
converged); the pulls of several seeds of the same launch show whether the quoted cross section and error are
right, with everything a launch does (training, its checks and later batches, integration, generation chunks).
``output madnis`` once, then one MadNIS launch per seed (``iseed``; default cards, ``nb_core`` cores, a fresh
build each time). ``--stock`` launches stock MadEvent (``madnis = False``) the same way, so that a disagreement
between the two is traced to one of them. Writes ``benchmarks/results/<output>.json`` and ``.md``.

    python benchmarks/launch_pulls.py "g g > t t~ g" --reference 413.35 0.23 --seeds 1 2 3 4 5 6 7 8 \\
        --output launch_pulls_ttg
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from madnis_plugin.install import mg5_home

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mg5_vs_madnis import RESULTS, madnis, process_directories, stock  # noqa: E402
from validation import pull  # noqa: E402


def markdown(rows: list[dict], header: dict) -> str:
    pulls = [row["pull"] for row in rows]
    chi2 = sum(p * p for p in pulls)
    lines = [
        f"# Launch pulls: `{header['process']}`" + (" (stock MadEvent)" if header.get("mode") == "stock" else ""),
        "",
        f"- command: `{header['command']}`",
        f"- machine: {header['machine']}; date: {header['date']}; commit {header['commit']}",
        f"- reference: {header['reference'][0]} +- {header['reference'][1]} pb ({header['reference_source']})",
        f"- {len(rows)} launches, {header['nevents']} events each, `nb_core = {header['nb_core']}`, "
        + (", ".join(f"`{k} = {v}`" for k, v in header.get("entries", {}).items()) or "default cards"),
        "",
        f"Mean pull {statistics.mean(pulls):+.2f}, sd {statistics.pstdev(pulls):.2f}, chi2 {chi2:.1f} for {len(rows)}",
        "launches (a pull includes the reference's error).",
        "",
        "| seed | sigma [pb] | error [pb] | pull | matrix-element calls | efficiency | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['seed']} | {row['sigma']} | {row['error']} | {row['pull']:+.2f} | {row['me_calls']:,} "
            f"| {100 * row['efficiency']:.2f} % | {row['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def keep_logs(directory: Path, target: Path, madnis_run: bool = True) -> None:
    """The last launch's log and the logs of its jobs (``madnis/jobs/<its run>``), so that a launch that went wrong
    can be read afterwards."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(directory.parent / f"{directory.name}_madnis_{madnis_run}.log", target / "launch.log")
    runs = list((directory / "madnis" / "jobs").glob("run_*"))
    if runs:
        latest = max(runs, key=lambda run: run.stat().st_mtime)
        for log in latest.rglob("*.log"):
            copy = target / log.relative_to(latest)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, copy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("process", help='an MG5aMC process definition, e.g. "g g > t t~ g"')
    parser.add_argument("--reference", type=float, nargs=2, required=True, metavar=("SIGMA", "ERROR"))
    parser.add_argument("--reference-source", default="MadEvent converged, benchmarks/results/validation.md")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--nevents", type=int, default=10000)
    parser.add_argument("--nb-core", type=int, default=2)
    parser.add_argument("--mg5", type=Path, default=mg5_home())
    parser.add_argument("--output", default="launch_pulls")
    parser.add_argument(
        "--set", action="append", default=[], metavar="ENTRY=VALUE", help="a run_card entry for every launch"
    )
    parser.add_argument("--logs", type=Path, help="keep each launch's log and its jobs' logs in LOGS/seed<N>/")
    parser.add_argument("--stock", action="store_true", help="launch stock MadEvent (madnis = False) instead")
    args = parser.parse_args(argv)
    entries = dict(item.split("=", 1) for item in args.set)
    reference = tuple(args.reference)
    rows = []
    for _, directory in process_directories(args.mg5, [args.process], "launch_pulls_", keep=False):
        for seed in args.seeds:
            launch = stock if args.stock else madnis
            m = launch(directory, args.nevents, nb_core=args.nb_core, iseed=seed, **entries)
            rows.append(
                dict(
                    seed=seed,
                    sigma=m.sigma,
                    error=m.error,
                    error_weight_tail=m.tail_error,
                    pull=pull((m.sigma, m.error), reference),
                    me_calls=m.points,
                    efficiency=m.efficiency,
                    seconds=m.seconds,
                )
            )
            print(json.dumps(rows[-1]), flush=True)
            if args.logs is not None:
                keep_logs(directory, args.logs / f"seed{seed}", madnis_run=not args.stock)
            for build in (directory / "SubProcesses").glob("P*/madnis_build"):
                shutil.rmtree(build)  # every launch builds, as a fresh one does
    command = (
        f'python benchmarks/launch_pulls.py "{args.process}" --reference {args.reference[0]} {args.reference[1]} '
        f"--seeds {' '.join(map(str, args.seeds))} --nevents {args.nevents} --nb-core {args.nb_core} "
        f"--output {args.output}" + "".join(f" --set {item}" for item in args.set) + (" --stock" if args.stock else "")
    )
    header = dict(
        process=args.process,
        command=command,
        machine=f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores)",
        date=f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        reference=list(reference),
        reference_source=args.reference_source,
        nevents=args.nevents,
        nb_core=args.nb_core,
        entries=entries,
        mode="stock" if args.stock else "madnis",
        commit=subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip(),
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")
    table = RESULTS / f"{args.output}.md"
    table.write_text(markdown(rows, header))
    print(table.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
