"""How much of a trained sampler's weight variance is the drawn scale channel (issue 8)?

With MadEvent's channel-dependent scale (``dynamical_scale_choice = -1``) the bridge draws each point's scale channel
from alpha (``fortran_bridge/madnis_bridge.f``, ``madnis_draw_scale``): f is then an unbiased but noisy estimate of
MadEvent's sum_i alpha_i f_i, f_i the point's contribution with the scales clustered with channel i (alpha_s^n and
the PDFs at that scale). Summing over the channels instead (Rao-Blackwell) would remove that noise for the price of
one clustering and luminosity per channel. This measures what it would remove before anyone builds it.

Trains one channel part as :mod:`wjj_ablation` does (plugin defaults, ``--steps`` fixed steps), draws ``--points``
weighted points (channels by their w_max, as a launch's generation), and evaluates each point again ``--draws`` times
with r moved by a few units in the last place: the same kinematics to 1e-13, another scale channel (the draw hashes
r's bits). With w_k the point's weight under draw k and w_bar their mean, it reports sigma/I per point and the
unweighting efficiency by MadEvent's rule (0.1 % of the weight above w_max) of single draws (mean over the draws) and
of w_bar, the share of the single-draw variance that is the draw's (mean over points of Var_k(w_k) / Var(w)), and the
mean relative spread of f over the draws. w_bar still holds a (draws+1)-th of that noise; the share is the full one.

Writes ``benchmarks/results/NAME.{json,md}`` (default ``scale_draw_noise``).

    OMP_NUM_THREADS=1 python benchmarks/scale_draw_noise.py WJJ_OUTPUT/SubProcesses/P1_gg_wpqqg --steps 600
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch
from wjj_ablation import RESULTS, process_of, quoted_arguments, train_part

from madnis.unweighting import madevent_efficiency

ULP_STEP = 3e-14  # moves r by a few units in the last place: the same momenta, another hash of its bits


def sampler_stats(weights: torch.Tensor, max_overweight: float) -> dict:
    """sigma/I per point and the efficiency by MadEvent's rule of one set of weights."""
    mean = weights.mean()
    return dict(
        sigma_over_i=float(weights.std() / mean),
        efficiency=madevent_efficiency(weights, max_overweight),
        largest_over_mean=float(weights.max() / mean),
    )


def measure(madnis, source, points: int, draws: int, seed: int) -> dict:
    """The single-draw and draw-averaged weights of ``points`` points of the trained sampler (module docstring)."""
    rule = madnis.config.max_overweight
    madnis.integrate(100_000, seed=seed + 1)  # each channel's w_max, which sets its probability, as in a launch
    sample = madnis.sample_weighted(points, seed=seed + 2)
    r, channel = sample.r.double(), sample.channel
    weight = torch.where(sample.ok, sample.weight.double(), torch.zeros((), dtype=torch.float64))
    values = torch.stack([source.integrand(r + k * ULP_STEP, channel).value.double() for k in range(draws + 1)])
    first = values[0]
    per_value = torch.where(first != 0, weight / first, torch.zeros_like(weight))  # w = (J alpha / q) f
    weights = per_value * values  # (draws + 1, points): the point's weight under each draw
    single = [sampler_stats(w, rule) for w in weights]
    nonzero = first != 0
    return dict(
        points=points,
        draws=draws,
        single_sigma_over_i=sum(s["sigma_over_i"] for s in single) / len(single),
        single_efficiency=sum(s["efficiency"] for s in single) / len(single),
        single_largest_over_mean=sum(s["largest_over_mean"] for s in single) / len(single),
        averaged=sampler_stats(weights.mean(0), rule),
        draw_variance_share=float(weights.var(0).mean() / weights.var()),
        f_relative_spread=float((values.std(0)[nonzero] / values.mean(0)[nonzero].abs()).mean()),
    )


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# The drawn scale channel's share of the weight variance (issue 8)",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, 1 torch thread, 1 bridge worker",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "- each point evaluated 1 + draws times with r moved by a few ulps (same momenta, another drawn scale channel);"
        " single: one draw per point (mean over the draws); averaged: the mean of the draws per point",
        "",
        "| part | steps | seed | points | sigma/I single | sigma/I averaged | efficiency single | efficiency averaged "
        "| draw's share of the variance | relative spread of f over the draws |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['part']} | {row['steps']} | {row['seed']} | {row['points']} | {row['single_sigma_over_i']:.3f} | "
            f"{row['averaged']['sigma_over_i']:.3f} | {100 * row['single_efficiency']:.2f} % | "
            f"{100 * row['averaged']['efficiency']:.2f} % | {100 * row['draw_variance_share']:.1f} % | "
            f"{100 * row['f_relative_spread']:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdir", help="a P-dir of an `output madnis` (e.g. SubProcesses/P1_gg_wpqqg)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--points", type=int, default=30_000)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--part", type=int, nargs="+", default=[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[21])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="scale_draw_noise", help="stem of the result files")
    args = parser.parse_args(argv)
    rows = []
    for part in args.part:
        for seed in args.seeds:
            madnis, source, seconds = train_part(args.pdir, args.parts, part, args.steps, {}, seed)
            row = measure(madnis, source, args.points, args.draws, seed)
            label = f"{process_of(Path(args.pdir))} {part} of {args.parts}"
            rows.append(dict(part=label, steps=args.steps, seed=seed) | row)
            print(json.dumps(rows[-1]), flush=True)
    command = (
        f"OMP_NUM_THREADS=1 python benchmarks/scale_draw_noise.py OUTPUT/SubProcesses/{Path(args.pdir).name} "
        + " ".join(quoted_arguments(argv if argv is not None else sys.argv[1:]))
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
