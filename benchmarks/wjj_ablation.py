"""Ablation on matrix elements: which TrainingConfig setting shrinks the weight tail of a W+2j channel part (issue 8).

Each run trains one channel part of a P-dir (made for ``g g > w+ d u~ g``'s, usable on any other; the part a 2-core
launch of the run's seed trains: the P-dir's channel groups dealt into ``--parts`` parts of about equal estimated
cross section, ``madnis.subset``) for ``--steps`` fixed steps with the plugin's run_card defaults plus the row's
overrides, then draws ``--points`` weighted points (batches of ``--batch`` points, default 100k, channels by their
w_max as a launch draws them) and reports sigma/I per point, the unweighting efficiency of all of them by MadEvent's
rule (at most 0.1 % of the weight above w_max), the median efficiency of the batches (a launch's chunk of 1000 events
unweights 40k-70k points against its own w_max), the largest weight / mean, and the training wall time. Runs are
spread over ``--jobs`` processes (one bridge worker and one torch thread each). Writes
``benchmarks/results/NAME.{json,md}`` (``--name``, default ``wjj_ablation``).

    OMP_NUM_THREADS=1 python benchmarks/wjj_ablation.py WJJ_OUTPUT/SubProcesses/P1_gg_wpqqg \\
        --row '{}' --row '{"flow_hidden_units": 64}' --seeds 21 22 23 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def train_part(pdir: str, parts: int, part: int, steps: int, overrides: dict, seed: int) -> tuple:
    """Channel part ``part`` of ``parts`` of the P-dir, trained ``steps`` fixed steps with the plugin's run_card
    defaults plus ``overrides`` (one torch thread, one bridge worker): (MadNIS, its ProcessSource, training
    seconds)."""
    import torch
    from madnis_plugin.mg5.cluster_jobs import channel_groups
    from madnis_plugin.mg5.madevent_run import process_source
    from madnis_plugin.run.source import channel_part
    from madnis_plugin.settings import MadnisSettings

    from madnis import MadNIS
    from madnis.subset import partition_groups

    torch.set_num_threads(1)
    settings = MadnisSettings(workers="1")
    groups, sigma = channel_groups(Path(pdir), seed)  # dealt by estimated cross section, as a launch of this seed
    channels = partition_groups(groups, parts, sigma)[part - 1]
    source = channel_part(process_source(Path(pdir), settings, seed), channels, f"part {part} of {parts}")
    overrides = {"steps": steps, **overrides}  # a row may set its own steps
    config = dataclasses.replace(settings.training_config(seed=seed), **overrides)
    madnis = MadNIS(source.integrand, config)
    start = time.perf_counter()
    madnis.train()
    return madnis, source, time.perf_counter() - start


def run(
    pdir: str,
    parts: int,
    part: int,
    steps: int,
    points: int,
    batch: int,
    overrides: dict,
    seed: int,
    sampling_shares: tuple[float, ...] = (),
) -> list[dict]:
    """One training and its evaluation (in a worker process): a row as trained, and one per flat share in
    ``sampling_shares`` with which the same trained part is sampled instead (the defensive mixture's density is exact
    for any share, :mod:`madnis.sampler`)."""
    madnis, _, train_seconds = train_part(pdir, parts, part, steps, overrides, seed)
    setting = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
    common = dict(
        seed=seed,
        steps=steps,
        train_s=round(train_seconds, 1),
        ms_per_step=round(1e3 * train_seconds / max(steps, 1), 1),
    )
    rows = [dict(setting=setting, **common, **evaluate(madnis, points, batch, seed))]
    for share in sampling_shares:
        madnis.sampler.defensive_fraction = share
        label = f"{setting}, sampled with defensive_fraction={share}"
        rows.append(dict(setting=label, **common, **evaluate(madnis, points, batch, seed)))
    return rows


def evaluate(madnis, points: int, batch: int, seed: int) -> dict:
    """sigma/I, unweighting efficiencies and the largest weight of ``points`` weighted points of the trained part."""
    import torch

    from madnis.unweighting import madevent_efficiency

    madnis.integrate(batch, seed=seed + 1)  # the channel allocation of the weighted points, as in a launch
    batches = []
    for k in range(points // batch):
        sample = madnis.sample_weighted(batch, seed=seed + 2 + k)
        batches.append(torch.where(sample.ok, sample.weight.double(), torch.zeros((), dtype=torch.float64)))
    weights = torch.cat(batches)
    mean = float(weights.mean())

    def efficiency(w: torch.Tensor) -> float:
        return madevent_efficiency(w, madnis.config.max_overweight)

    return dict(
        sigma_over_I=float(weights.std()) / mean,
        efficiency_all=efficiency(weights),
        efficiency_batch_median=statistics.median(efficiency(w) for w in batches),
        max_over_mean=float(weights.max()) / mean,
    )


def process_of(pdir: Path) -> str:
    """The process the P-dir's output was generated for (its proc_card's first ``generate`` line), for the header."""
    card = pdir.resolve().parents[1] / "Cards" / "proc_card_mg5.dat"
    lines = card.read_text().splitlines() if card.is_file() else []
    generated = [line.split(None, 1)[1].strip() for line in lines if line.startswith("generate ")]
    return f"{generated[0]}, {pdir.name}" if generated else pdir.name


def markdown(runs: list[dict], command: str, args: argparse.Namespace) -> str:
    process = process_of(Path(args.pdir))
    lines = [
        f"# Channel-part ablation on `{process}` (issue 8)",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.platform()}, {args.jobs} runs at a time, 1 torch thread and 1 "
        "bridge worker each",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- part {args.part} of {args.parts} of `{process}` (a launch's split), {args.steps} training steps "
        f"x 1024 points with the plugin's run_card defaults plus the setting; {args.points} weighted points in "
        f"batches of {args.batch}; efficiency = mean(w) / w_max, w_max by MadEvent's rule (at most 0.1 % of the weight "
        "above it), of all points and (median) of each batch",
        "",
        "| setting | seed | train s | ms/step | sigma/I | efficiency, all points | efficiency, batch median | "
        "largest w / mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['train_s']} | {r['ms_per_step']} | {r['sigma_over_I']:.2f} | "
            f"{100 * r['efficiency_all']:.2f} % | {100 * r['efficiency_batch_median']:.2f} % | "
            f"{r['max_over_mean']:.0f} |"
        )
    by_setting: dict[str, list[dict]] = {}
    for r in runs:
        by_setting.setdefault(r["setting"], []).append(r)
    lines += ["", "| setting | seeds | mean sigma/I | mean efficiency, all | mean efficiency, batch median | mean s |"]
    lines.append("|---|---|---|---|---|---|")
    for setting, rows in by_setting.items():
        mean = lambda key: statistics.fmean(r[key] for r in rows)  # noqa: E731
        lines.append(
            f"| {setting} | {len(rows)} | {mean('sigma_over_I'):.2f} | {100 * mean('efficiency_all'):.2f} % | "
            f"{100 * mean('efficiency_batch_median'):.2f} % | {mean('train_s'):.1f} |"
        )
    return "\n".join(lines) + "\n"


def quoted_arguments(argv: list[str]) -> list[str]:
    """The arguments a results file quotes: without the P-dir and ``--out DIR`` (paths of this machine)."""
    kept, skip = [], True  # the first is the P-dir
    for argument in argv:
        if not skip and argument != "--out":
            kept.append(argument)
        skip = argument == "--out"
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdir", help="a P-dir of an `output madnis` (e.g. SubProcesses/P1_gg_wpqqg of g g > w+ d u~ g)")
    parser.add_argument("--row", action="append", default=[], help="JSON dict of TrainingConfig overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=[21])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--part", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="wjj_ablation", help="stem of the result files")
    parser.add_argument("--batch", type=int, default=100_000, help="weighted points per batch (a chunk's sample)")
    parser.add_argument(
        "--sampling-shares",
        type=float,
        nargs="+",
        default=[],
        help="also sample each trained part with these defensive flat shares (extra rows)",
    )
    args = parser.parse_args(argv)
    shares = tuple(args.sampling_shares)
    tasks = [
        (args.pdir, args.parts, args.part, args.steps, args.points, args.batch, json.loads(row), seed, shares)
        for row in args.row or ["{}"]
        for seed in args.seeds
    ]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        runs = [row for rows in pool.starmap(run, tasks, chunksize=1) for row in rows]
    for r in runs:
        print(json.dumps(r), flush=True)
    command = (
        f"OMP_NUM_THREADS=1 python benchmarks/wjj_ablation.py OUTPUT/SubProcesses/{Path(args.pdir).name} "
        + " ".join(
            f"'{a}'" if a.startswith("{") else a for a in quoted_arguments(argv if argv is not None else sys.argv[1:])
        )
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(dict(command=command, runs=runs), indent=1) + "\n")
    text = markdown(runs, command, args)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
