"""Ablation: which TrainingConfig setting moves sigma/I and the unweighting efficiency on the 4D toy (issue 8).

Each row trains ``TwoResonances4D(mapped=True)`` for ``--steps`` x 1024 points on one thread with the
TrainingConfig defaults plus the row's overrides, then measures (benchmarks/toys.py ``madnis_unweighting``)
sigma/I per point and the efficiency mean(w) / w_max by MadEvent's rule (0.1 % of the weight above w_max) on
``--points`` weighted points with channels drawn by their integral, and ms per step (training wall time,
VEGAS initialisation included, / steps). Rows run back to back in one process; ``--seeds`` repeats each row.
Writes ``benchmarks/results/unweighting_ablation.{json,md}``; ``--merge`` builds them from the JSON lines
printed by earlier runs (e.g. several runs side by side) instead of training.

    OMP_NUM_THREADS=1 python benchmarks/unweighting_ablation.py --row '{}' --row '{"vegas_pretraining": true}'
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
from toys import madnis_unweighting

from madnis import TrainingConfig

RESULTS = Path(__file__).resolve().parent / "results"


def summary(rows: list[dict]) -> dict:
    """Mean (and spread when several seeds) of the metrics of one setting."""
    out = dict(setting=rows[0]["setting"], seeds=[r["seed"] for r in rows])
    for key in ("sigma_over_I", "efficiency_trunc_1e-3", "ms_per_step"):
        values = [r[key] for r in rows]
        out[key] = statistics.fmean(values)
        out[key + "_spread"] = max(values) - min(values) if len(values) > 1 else None
    return out


def markdown(summaries: list[dict], command: str, steps: int, points: int, notes: list[str]) -> str:
    fmt = lambda v, f: "" if v is None else f" (±{v / 2:{f}})"  # noqa: E731
    lines = [
        "# Unweighting ablation on TwoResonances4D(mapped=True)",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, torch {torch.__version__}, 1 torch thread; "
        "2 cores shared with other jobs: ms/step is noisy, compare rows of one run only",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- {steps} steps x 1024 points; {points} weighted points with channels drawn by their integral; efficiency = "
        "mean(w) / w_max, w_max by MadEvent's rule (at most 0.1 % of the weight above it); "
        "(± half the spread over seeds when several)",
        f"- defaults: TrainingConfig() as of this run: {json.dumps(_tuned_defaults())}",
        *(f"- {note}" for note in notes),
        "",
        "| setting (overrides of the defaults) | seeds | sigma/I | efficiency | ms/step |",
        "|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['setting']} | {len(s['seeds'])} | {s['sigma_over_I']:.3f}{fmt(s['sigma_over_I_spread'], '.3f')} | "
            f"{s['efficiency_trunc_1e-3']:.3f}{fmt(s['efficiency_trunc_1e-3_spread'], '.3f')} | "
            f"{s['ms_per_step']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _tuned_defaults() -> dict:
    """The TrainingConfig defaults this ablation is about."""
    keys = ("learning_rate", "lr_schedule", "loss", "buffered_steps", "buffer_top_m", "vegas_pretraining")
    keys += ("uniform_fraction", "flow_bins", "per_group_flows", "train_channel_weights")
    config = TrainingConfig()
    return {k: getattr(config, k) for k in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", action="append", default=[], help="JSON dict of TrainingConfig overrides")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--merge", type=Path, nargs="+", help="logs of earlier runs (their JSON lines) to tabulate")
    parser.add_argument("--note", action="append", default=[], help="extra header line (e.g. the merged commands)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    summaries, raw = [], []
    if args.merge:
        lines = [line for log in args.merge for line in log.read_text().splitlines() if line.startswith("{")]
        raw = [json.loads(line) for line in lines]
        for setting in dict.fromkeys(r["setting"] for r in raw):
            summaries.append(summary([r for r in raw if r["setting"] == setting]))
    for row in [] if args.merge else args.row or ["{}"]:
        runs = []
        for seed in args.seeds:
            result = madnis_unweighting(args.steps, args.points, seed=seed, **json.loads(row))
            runs.append({**result, "seed": seed})
            print(json.dumps(runs[-1]), flush=True)
        raw += runs
        summaries.append(summary(runs))
    args.out.mkdir(parents=True, exist_ok=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/unweighting_ablation.py " + " ".join(
        f"'{a}'" if a.startswith("{") else a for a in sys.argv[1:]
    )
    (args.out / "unweighting_ablation.json").write_text(
        json.dumps(dict(command=command, summaries=summaries, runs=raw), indent=1) + "\n"
    )
    text = markdown(summaries, command, args.steps, args.points, args.note)
    (args.out / "unweighting_ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
