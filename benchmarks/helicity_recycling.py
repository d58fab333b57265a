"""Matrix-element cost per point with and without MadEvent's helicity recycling (issue 12, cheaper points).

For each launched P-dir (one that holds ``matrix*_optim.f``, written by a launch with
``madnis_recycle_helicities = True``, the default, as MadEvent's survey writes it, :mod:`madnis_plugin.mg5.helicities`,
or by a stock launch): the process directory is copied without ``matrix*_optim.*`` (its bridge then compiles the full
helicity sums ``matrix*_orig.f``, as the plugin does with ``madnis_recycle_helicities = False``), both bridge
libraries evaluate the same points inside the cuts (uniform points of random channels, those with f != 0), one
worker each, alternately ``--repeats`` times; reported: the median Fortran microseconds per point of each and the
largest relative difference of f J and of alpha between them. Writes ``benchmarks/results/helicity_recycling.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/helicity_recycling.py LAUNCHED_WJJ/SubProcesses/P1_gg_wpqqg \\
        LAUNCHED_TTJ/SubProcesses/P1_gg_ttxg
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from fortran_bridge import ProcessLibrary

RESULTS = Path(__file__).resolve().parent / "results"


def full_sum_copy(pdir: Path, work: Path) -> Path:
    """The P-dir in a copy of its process directory without the recycled matrix elements."""
    copy = work / pdir.parent.parent.name
    shutil.copytree(
        pdir.parent.parent, copy, symlinks=True, ignore=shutil.ignore_patterns("madnis_build", "Events", "madnis")
    )
    copied = copy / "SubProcesses" / pdir.name
    for optimised in copied.glob("matrix*_optim.*"):
        optimised.unlink()
    return copied


def measure(pdir: Path, points: int, repeats: int) -> dict:
    if not list(pdir.glob("matrix*_optim.f")):
        raise SystemExit(f"{pdir} has no matrix*_optim.f: launch the process first")
    with tempfile.TemporaryDirectory(prefix="helicities-") as work:
        with ProcessLibrary(pdir) as recycled, ProcessLibrary(full_sum_copy(pdir, Path(work))) as full:
            rng = np.random.default_rng(1)
            channel = rng.integers(0, recycled.info.n_channels, points)
            r = rng.random((points, recycled.info.ndim))
            inside = recycled.evaluate(channel, r).value != 0
            channel, r = channel[inside], r[inside]
            seconds: dict[str, list[float]] = {"recycled": [], "full": []}
            results = {}
            for _ in range(repeats):
                for name, library in (("full", full), ("recycled", recycled)):
                    library.fortran_seconds = 0.0
                    results[name] = library.evaluate(channel, r)
                    seconds[name].append(library.fortran_seconds)
    a, b = results["recycled"], results["full"]
    per_point = {name: 1e6 * statistics.median(s) / len(channel) for name, s in seconds.items()}
    return dict(
        pdir=pdir.name,
        points_inside_cuts=int(len(channel)),
        us_per_point_full=per_point["full"],
        us_per_point_recycled=per_point["recycled"],
        speedup=per_point["full"] / per_point["recycled"],
        max_rel_diff_value=float(np.max(np.abs(a.value - b.value) / np.abs(b.value))),
        max_abs_diff_alpha=float(np.max(np.abs(a.alpha - b.alpha))),
    )


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# Matrix elements with and without MadEvent's helicity recycling",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, one bridge worker per library",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "- full: the bridge compiled from `matrix*_orig.f` (every helicity combination; the plugin before it recycled "
        "helicities); recycled: from `matrix*_optim.f`, written by the launch as MadEvent's survey writes it "
        "(the contributing helicities, wave functions shared). Fortran time per point inside the cuts, median of "
        "the repeats (the two alternate).",
        "",
        "| P-dir | points | full [us/point] | recycled [us/point] | speed-up | max rel. diff f J | max diff alpha |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pdir']} | {r['points_inside_cuts']} | {r['us_per_point_full']:.1f} | "
            f"{r['us_per_point_recycled']:.1f} | {r['speedup']:.2f}x | {r['max_rel_diff_value']:.1e} | "
            f"{r['max_abs_diff_alpha']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdirs", nargs="+", type=Path, help="SubProcesses/P* of launched `output madnis` directories")
    parser.add_argument("--points", type=int, default=100_000, help="uniform points drawn (those inside cuts count)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = [measure(p.resolve(), args.points, args.repeats) for p in args.pdirs]
    names = " ".join(f"LAUNCHED/SubProcesses/{p.name}" for p in args.pdirs)
    command = f"OMP_NUM_THREADS=1 python benchmarks/helicity_recycling.py {names} --points {args.points}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "helicity_recycling.json").write_text(json.dumps(dict(command=command, rows=rows), indent=1) + "\n")
    text = markdown(rows, command)
    (args.out / "helicity_recycling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
