"""Integrate a launch's saved sampler of one P-dir as trained, with MadEvent's channel weights and with a flat share.

Why: a sampler can quote a low cross section with a small error when its learned channel weights have put a region's
weight on a channel whose flow does not draw it (``madnis.reach``). The same flows under MadEvent's alpha^MG, and
with a flat share of each channel's points, show which of the two left the region: per channel, I_i of each way.

    python benchmarks/sampler_reach.py OUTPUT/SubProcesses/P1_gq_llq JOB/sampler.pt --seed 41 --points 100000

``JOB/sampler.pt``: a training job's saved sampler (``madnis/jobs/run_NN/PDIR/train/`` of a launch; a channel part's
job names its channels in ``spec.json`` beside it); the P-dir gives the integrand (its compiled bridge and the
output's cards). Prints a markdown table; ``--output NAME`` also writes
``benchmarks/results/NAME.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FLAT_SHARE = 0.1
SHOWN = 8  # channels in the table's columns (the largest under alpha^MG); the others summed


def integrate_ways(pdir: Path, sampler: Path, seed: int, points: int) -> list[dict]:
    """The saved sampler's integral, per channel, drawn as trained, with alpha^MG, and with alpha^MG and a flat share."""
    import torch
    from madnis_plugin.mg5.madevent_run import process_source
    from madnis_plugin.run.source import channel_part
    from madnis_plugin.settings import MadnisSettings

    from madnis import MadNIS

    torch.set_num_threads(1)
    source = process_source(pdir, MadnisSettings(workers="1"), seed)
    spec = sampler.parent / "spec.json"  # a channel part's job names its channels there
    channels = json.loads(spec.read_text()).get("channels") if spec.is_file() else None
    if channels is not None:
        source = channel_part(source, channels, pdir.name)
    madnis = MadNIS.load(sampler, source.integrand)
    ways = [("as trained (learned channel weights, no flat share)", None, 0.0)]
    ways += [("MadEvent's channel weights alpha^MG", False, 0.0)]
    ways += [(f"alpha^MG and {FLAT_SHARE:g} of the points flat", False, FLAT_SHARE)]
    rows = []
    for label, learned, share in ways:
        if learned is not None:
            madnis.sampler.train_channel_weights = learned
        madnis.sampler.defensive_fraction = share
        result = madnis.integrate(points, seed=seed + 1)
        channels = [c.integral for c in result.channels]
        rows.append(dict(way=label, sigma=result.integral, error=result.error, channels=channels))
        print(f"{label}: {result.integral:.5g} +- {result.error:.3g} pb", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    """The table: sigma of each way and the I_i of the :data:`SHOWN` channels largest under alpha^MG, the rest summed."""
    by_size = sorted(range(len(rows[1]["channels"])), key=lambda i: -abs(rows[1]["channels"][i]))
    shown, rest = sorted(by_size[:SHOWN]), by_size[SHOWN:]
    lines = [
        "# A saved sampler drawn three ways (`benchmarks/sampler_reach.py`)",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, 1 torch thread, 1 bridge worker",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "",
        "| way | sigma [pb] | "
        + " | ".join(f"I_{i} [pb]" for i in shown)
        + (" | other channels [pb]" if rest else "")
        + " |",
        "|---|---|" + "---|" * (len(shown) + bool(rest)),
    ]
    for r in rows:
        cells = [f"{r['channels'][i]:.4g}" for i in shown] + (
            [f"{sum(r['channels'][i] for i in rest):.4g}"] if rest else []
        )
        lines.append(f"| {r['way']} | {r['sigma']:.5g} +- {r['error']:.3g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdir", type=Path, help="the P-dir whose integrand the sampler was trained on")
    parser.add_argument("sampler", type=Path, help="a training job's sampler.pt")
    parser.add_argument("--seed", type=int, default=41)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--output", help="write benchmarks/results/OUTPUT.{json,md}")
    args = parser.parse_args()
    rows = integrate_ways(args.pdir, args.sampler, args.seed, args.points)
    command = f"python benchmarks/sampler_reach.py OUTPUT/SubProcesses/{args.pdir.name} JOB/sampler.pt "
    command += f"--seed {args.seed} --points {args.points}" + (f" --output {args.output}" if args.output else "")
    text = markdown(rows, command)
    print(text)
    if args.output:
        (RESULTS / f"{args.output}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
        (RESULTS / f"{args.output}.md").write_text(text)


if __name__ == "__main__":
    main()
