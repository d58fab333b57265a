"""Where the weight tail of a trained channel part comes from (issue 8): the anatomy of its largest weights.

Trains one channel part of a P-dir (made for ``g g > w+ d u~ g``'s) as :mod:`wjj_ablation` does (plugin defaults, ``--steps`` fixed
steps), draws ``--points`` weighted points with the channels by their w_max (as a launch's generation draws them)
and reports:

- the share of the points with weight 0 (outside the cuts: they cost the flow and the phase space, no event);
- the unweighting efficiency of all points by MadEvent's rule (at most 0.1 % of the weight above w_max), and with
  the points of the channels carrying most of the weight above w_max left out one after the other;
- per channel: its share of the points (and of them with weight 0) and of sigma, its share of the weight above
  w_max, its largest weight;
- the ``--top`` largest weights: channel, the channel's probability p_i, the prior channel weight alpha_i, f J, the
  flow density q, the distance of r to the nearest face of the unit cube, and how much f J changes when r moves by
  1e-3 along any one dimension (a smooth region against a narrow spike or a cut edge).

Writes ``benchmarks/results/NAME.{json,md}`` (default ``wjj_weight_tail``).

    OMP_NUM_THREADS=1 python benchmarks/weight_tail.py WJJ_OUTPUT/SubProcesses/P1_gg_wpqqg --steps 800
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

from madnis.unweighting import madevent_efficiency, max_weight

NUDGE = 1e-3  # the step along each dimension that tells a smooth region from a spike or an edge
RANMAR_EDGE = 2.0**-24  # r stays in [2^-24, 1 - 2^-24] (fortran_bridge)


def efficiency(weights: torch.Tensor, max_overweight: float) -> float:
    return madevent_efficiency(weights, max_overweight) if bool((weights > 0).any()) else 0.0


def anatomy(madnis, source, points: int, top: int, seed: int) -> dict:
    """The tail of ``points`` weighted points of the trained part (module docstring)."""
    rule = madnis.config.max_overweight
    madnis.integrate(100_000, seed=seed + 1)  # each channel's w_max, which sets its probability, as in a launch
    sample = madnis.sample_weighted(points, seed=seed + 2)
    weight = torch.where(sample.ok, sample.weight.double(), torch.zeros((), dtype=torch.float64))
    mean, w_max = float(weight.mean()), max_weight(weight, rule)
    excess = (weight - w_max).clamp(min=0)
    channels = []
    for c in torch.unique(sample.channel).tolist():
        mine = sample.channel == c
        channels.append(
            dict(
                channel=c,
                points=int(mine.sum()) / points,
                zero=float((weight[mine] == 0).double().mean()),
                sigma=float(weight[mine].sum() / weight.sum()),
                above_w_max=float(excess[mine].sum() / excess.sum()) if excess.sum() > 0 else 0.0,
                largest_over_mean=float(weight[mine].max()) / mean,
            )
        )
    channels.sort(key=lambda row: -row["above_w_max"])
    without = []
    keep = torch.ones_like(weight, dtype=torch.bool)
    for row in [row for row in channels[:3] if row["above_w_max"] > 0]:
        keep &= sample.channel != row["channel"]
        without.append(dict(channel=row["channel"], efficiency=efficiency(weight[keep], rule)))
    largest = []
    for k in torch.argsort(weight, descending=True)[:top].tolist():
        r, channel = sample.r[k].double(), sample.channel[k]
        nudged = r.repeat(2 * len(r) + 1, 1)
        for d in range(len(r)):
            nudged[1 + 2 * d, d] -= NUDGE
            nudged[2 + 2 * d, d] += NUDGE
        nudged = nudged.clamp(RANMAR_EDGE, 1 - RANMAR_EDGE)
        result = source.integrand(nudged, channel.repeat(len(nudged)))
        value = result.value.double()
        with torch.no_grad():
            log_q = madnis.sampler.log_q(r[None].to(sample.r.dtype), channel[None])
        change = (value[1:] / value[0]).clamp(min=0)
        largest.append(
            dict(
                weight_over_mean=float(weight[k]) / mean,
                channel=int(channel),
                channel_probability=float(sample.channel_probability[k]),
                alpha_prior=float(result.alpha_prior[0, channel]) if result.alpha_prior is not None else None,
                f_jacobian=float(value[0]),
                flow_density=float(log_q.exp()),
                distance_to_face=float(torch.minimum(r, 1 - r).min()),
                nudged_f_jacobian_min=float(change.min()),
                nudged_f_jacobian_max=float(change.max()),
            )
        )
    return dict(
        points=points,
        efficiency=efficiency(weight, rule),
        zero_share=float((weight == 0).double().mean()),
        w_max_over_mean=w_max / mean,
        without_channels=without,
        channels=channels,
        largest=largest,
    )


def markdown(result: dict, command: str, args: argparse.Namespace) -> str:
    lines = [
        f"# Anatomy of the weight tail of `{process_of(Path(args.pdir))}` (issue 8)",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, 1 torch thread, 1 bridge worker",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- part {args.part} of {args.parts} of `{process_of(Path(args.pdir))}`, {args.steps} training steps (plugin defaults, seed "
        f"{args.seed}); {result['points']} weighted points, channels by their w_max; MadEvent's rule (0.1 % of the "
        "weight above w_max)",
        "",
        f"Efficiency {100 * result['efficiency']:.2f} %, w_max / mean {result['w_max_over_mean']:.0f}, "
        f"{100 * result['zero_share']:.1f} % of the points with weight 0 (outside the cuts). Leaving out the "
        "channels with most weight above w_max: "
        + ", ".join(f"without channel {w['channel']} {100 * w['efficiency']:.2f} %" for w in result["without_channels"])
        + ".",
        "",
        "| channel | share of points | of them weight 0 | share of sigma | share of the weight above w_max "
        "| largest w / mean |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["channels"][: args.top]:
        lines.append(
            f"| {row['channel']} | {100 * row['points']:.1f} % | {100 * row['zero']:.1f} % | {100 * row['sigma']:.1f} % | "
            f"{100 * row['above_w_max']:.1f} % | {row['largest_over_mean']:.0f} |"
        )
    lines += [
        "",
        f"The {args.top} largest weights (f J after moving r by {NUDGE:g} along one dimension, as a ratio to f J at r: "
        "near 1 is a smooth region, 0 a cut edge, far above or below 1 a narrow peak):",
        "",
        "| w / mean | channel | p_i | alpha_i | f J (pb) | q | distance to a face | f J nudged, min - max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["largest"]:
        lines.append(
            f"| {row['weight_over_mean']:.0f} | {row['channel']} | {row['channel_probability']:.3f} | "
            f"{row['alpha_prior']:.2f} | {row['f_jacobian']:.3g} | {row['flow_density']:.3g} | "
            f"{row['distance_to_face']:.1e} | {row['nudged_f_jacobian_min']:.2f} - {row['nudged_f_jacobian_max']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdir", help="a P-dir of an `output madnis` (e.g. SubProcesses/P1_gg_wpqqg of g g > w+ d u~ g)")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--points", type=int, default=300_000)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--part", type=int, default=1)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="wjj_weight_tail", help="stem of the result files")
    args = parser.parse_args(argv)
    madnis, source, train_seconds = train_part(args.pdir, args.parts, args.part, args.steps, {}, args.seed)
    result = anatomy(madnis, source, args.points, args.top, args.seed) | {"train_s": round(train_seconds, 1)}
    command = (
        f"OMP_NUM_THREADS=1 python benchmarks/weight_tail.py OUTPUT/SubProcesses/{Path(args.pdir).name} "
        + " ".join(quoted_arguments(argv if argv is not None else sys.argv[1:]))
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"command": command, **result}, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(result, command, args))
    print(markdown(result, command, args))


if __name__ == "__main__":
    main()
