"""How many of a launch's weighted points fall outside the cuts, and its efficiency per point inside them.

Why: stock MadEvent's points in ``SubProcesses/results.dat`` (field 4, ``kevent`` in ``Source/dsample.f``) count only
the points of weight != 0, those inside the cuts, where the matrix element is evaluated: a point that fails the cuts
costs MadEvent's phase-space generation alone and is not counted (the survey's log prints its share, e.g.
``Fluctuation: 0.744E+00 0.992E+02 6.4%``: 6.4 % of the points inside the cuts). MadNIS's calls count every point
(the flow draws it whether or not it passes the cuts), so its calls and efficiency (events / those points) are on
another basis than stock's (events / kevent); a launch also prints its count inside the cuts, which
``benchmarks/mg5_vs_madnis.py`` reports beside stock's. This script draws a launch's saved
samplers again and reports both bases for MadNIS: per point drawn and per point inside the cuts, and what a point
costs inside and outside them.

    python benchmarks/cut_share.py OUTPUT/SubProcesses/P1_gq_llq JOB/sampler.pt [PDIR SAMPLER ...] --points 100000

Each P-dir with the sampler its launch saved (``madnis/jobs/run_NN/PDIR/train/sampler.pt``; a channel part's job
names its channels in ``spec.json`` beside it). The weighted points are drawn as a launch draws them
(``MadNIS.integrate``'s channel allocation and ``sample_weighted``); efficiency by MadEvent's rule
(``madnis_max_overweight``), of all points and of those inside the cuts. Prints a markdown table; ``--output NAME``
also writes ``benchmarks/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def cut_share(pdir: Path, sampler: Path, seed: int, points: int) -> dict:
    """The share of ``points`` weighted points of the saved sampler outside the cuts, and the efficiencies."""
    import torch
    from madnis_plugin.mg5.madevent_run import process_source
    from madnis_plugin.run.source import channel_part
    from madnis_plugin.settings import MadnisSettings

    from madnis import MadNIS
    from madnis.unweighting import madevent_efficiency

    torch.set_num_threads(1)
    source = process_source(pdir, MadnisSettings(workers="1"), seed)
    spec = sampler.parent / "spec.json"
    channels = json.loads(spec.read_text()).get("channels") if spec.is_file() else None
    name = pdir.name if channels is None else f"{pdir.name} ({len(channels)} channels)"
    if channels is not None:
        source = channel_part(source, channels, pdir.name)
    madnis = MadNIS.load(sampler, source.integrand)
    madnis.integrate(min(points, 100_000), seed=seed + 1)  # the launch's channel allocation
    start = time.perf_counter()
    sample = madnis.sample_weighted(points, seed=seed + 2)
    draw_seconds = time.perf_counter() - start
    weights = torch.where(sample.ok, sample.weight.double(), torch.zeros((), dtype=torch.float64))
    inside = weights != 0
    overweight = madnis.config.max_overweight
    row = dict(
        pdir=name,
        points=points,
        inside_share=float(inside.double().mean()),
        efficiency_all=madevent_efficiency(weights, overweight),
        efficiency_inside=madevent_efficiency(weights[inside], overweight),
        us_per_point=1e6 * draw_seconds / points,
    )
    for label, subset in (("inside", inside), ("outside", ~inside)):  # the integrand alone, again on the same points
        start = time.perf_counter()
        source.integrand(sample.r[subset].double(), sample.channel[subset])
        row[f"integrand_us_{label}"] = 1e6 * (time.perf_counter() - start) / max(int(subset.sum()), 1)
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# MadNIS points outside the cuts, and the efficiency per point inside them",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, 1 torch thread, 1 bridge worker",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "- efficiency: mean(w) / w_max, w_max by MadEvent's rule (at most 0.1 % of the weight above it); per point inside "
        "the cuts = the basis of stock's results.dat count (kevent, points of weight != 0)",
        "",
        "- times: the whole draw per point (flow, integrand, channel weights), then the integrand alone on the same points "
        "inside and outside the cuts (one torch thread, one bridge worker)",
        "",
        "| P-dir | points | share inside the cuts | efficiency, all points | efficiency, points inside the cuts "
        "| draw per point | integrand per point inside / outside |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pdir']} | {r['points']:,} | {100 * r['inside_share']:.1f} % | {100 * r['efficiency_all']:.2f} % | "
            f"{100 * r['efficiency_inside']:.2f} % | {r['us_per_point']:.1f} us "
            f"| {r['integrand_us_inside']:.1f} / {r['integrand_us_outside']:.1f} us |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pairs", nargs="+", help="P-dir and saved sampler, repeated")
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=41)
    parser.add_argument("--output", help="results/<output>.json and .md")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give P-dirs and samplers in pairs: PDIR SAMPLER [PDIR SAMPLER ...]")
    pairs = [(Path(args.pairs[k]), Path(args.pairs[k + 1])) for k in range(0, len(args.pairs), 2)]
    rows = [cut_share(pdir, sampler, args.seed, args.points) for pdir, sampler in pairs]
    quoted = ["PDIR SAMPLER"] * len(pairs) + [a for a in sys.argv[1 + 2 * len(pairs) :]]
    text = markdown(rows, "python benchmarks/cut_share.py " + " ".join(quoted))
    print(text)
    if args.output:
        (RESULTS / f"{args.output}.md").write_text(text)
        (RESULTS / f"{args.output}.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
