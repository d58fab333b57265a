"""What a point costs and how much it varies with its P-dir's subprocesses summed and with one drawn.

Why: a P-dir groups subprocesses (``P1_gq_llq`` of ``p p > e+ e- j``: four, each with its mirror). Summing them at
every point evaluates every matrix element; drawing one by its parton luminosity (``madnis_draw_subprocess``, as
MadEvent's grouped subprocesses) evaluates one, and adds the draw's variance. This script evaluates the same flat
points (channel uniform, r uniform) both ways on one bridge worker and reports, per P-dir: the integrand's time per
point inside and outside the cuts, the multi-channel estimate (MadEvent's alpha) and its relative standard deviation
per point, the share inside the cuts, and the variance the draw adds where the sampler were perfect (g = f):
E_f[sum_k f_k^2 / (p_k f^2)] - 1, from the same points (mean of f_drawn^2 / f over mean of f, minus 1), which bounds
what a trained flow's sigma/I can reach with the draw.

    OMP_NUM_THREADS=1 python benchmarks/subprocess_draw.py OUTPUT/SubProcesses/P1_gq_llq [PDIR ...] --points 100000

Prints a markdown table; ``--output NAME`` also writes ``benchmarks/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def measure(pdir: Path, subprocess: bool, points: int, seed: int) -> tuple[dict, np.ndarray]:
    """One P-dir, subprocesses summed or drawn: times inside / outside the cuts, estimate and its spread; the values."""
    from fortran_bridge import Draws, ProcessLibrary

    with ProcessLibrary(pdir, workers=1, draws=Draws(subprocess=subprocess)) as library:
        n_channels, ndim = library.info.n_channels, library.info.ndim
        rng = np.random.default_rng(seed)
        library.evaluate(np.zeros(2000, np.int32), rng.random((2000, ndim)))  # SMATRIX's helicity warm-up
        rng = np.random.default_rng(seed + 1)
        channel, r = rng.integers(0, n_channels, points).astype(np.int32), rng.random((points, ndim))
        evaluation = library.evaluate(channel, r)
        weight = evaluation.value * evaluation.alpha[np.arange(points), channel] * n_channels
        inside = evaluation.value != 0
        row = dict(
            pdir=pdir.name,
            subprocesses=len(library.info.subprocesses),
            mode="drawn" if subprocess else "summed",
            points=points,
            inside_share=float(inside.mean()),
            sigma_pb=float(weight.mean()),
            error_pb=float(weight.std() / points**0.5),
            sigma_over_I=float(weight.std() / weight.mean()),
        )
        for label, subset in (("inside", inside), ("outside", ~inside)):
            start = time.perf_counter()
            library.evaluate(channel[subset], r[subset])
            row[f"us_{label}"] = 1e6 * (time.perf_counter() - start) / max(int(subset.sum()), 1)
    return row, evaluation.value


def compare(pdir: Path, points: int, seed: int) -> list[dict]:
    """Both modes on the same points; the drawn row also gets the variance the draw adds under g = f."""
    summed, value = measure(pdir, False, points, seed)
    drawn, drawn_value = measure(pdir, True, points, seed)
    inside = value > 0
    drawn["added_variance"] = float((drawn_value[inside] ** 2 / value[inside]).sum() / value[inside].sum() - 1)
    summed["added_variance"] = 0.0
    for row in (summed, drawn):
        print(json.dumps(row), file=sys.stderr, flush=True)
    return [summed, drawn]


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# A P-dir's subprocesses summed at every point, or one drawn by its luminosity",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, 1 bridge worker",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "- the same flat points both ways (channel and r uniform); sigma = mean of alpha_c value x channels (MadEvent's "
        "alpha); sigma/I per point its relative standard deviation; times: the integrand alone on the points inside "
        "and outside the cuts; variance added: E_f[sum_k f_k^2 / (p_k f^2)] - 1, the relative variance the draw adds "
        "under a perfect sampler (g = f), from the same points",
        "",
        "| P-dir | subprocess entries | mode | points | inside the cuts | sigma [pb] | sigma/I per point "
        "| per point inside / outside | variance added |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pdir']} | {r['subprocesses']} | {r['mode']} | {r['points']:,} | {100 * r['inside_share']:.1f} % "
            f"| {r['sigma_pb']:.4g} +- {r['error_pb']:.2g} | {r['sigma_over_I']:.2f} "
            f"| {r['us_inside']:.1f} / {r['us_outside']:.1f} us | {r['added_variance']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pdirs", nargs="+", type=Path, help="MadEvent SubProcesses/P* directories")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--output", help="results/<output>.json and .md")
    args = parser.parse_args()
    rows = [row for pdir in args.pdirs for row in compare(pdir, args.points, args.seed)]
    quoted = ["PDIR"] * len(args.pdirs) + sys.argv[1 + len(args.pdirs) :]
    text = markdown(rows, "OMP_NUM_THREADS=1 python benchmarks/subprocess_draw.py " + " ".join(quoted))
    print(text)
    if args.output:
        (RESULTS / f"{args.output}.md").write_text(text)
        (RESULTS / f"{args.output}.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
