"""Which channel allocation unweights best when the channels' w_max are estimated (issue 8)?

For each trained sampler (a launch's training job directory, ``madnis/jobs/run_01/<job>/train``) the script runs
``--estimates`` independent integrations of ``--integration-points`` points, as a launch's training job does once:
each gives the per-channel I_i and w_max_i (MadEvent's rule, share 1e-3) that the unweighting allocates the channels
by. Then it draws one pool of ``--pool`` points and evaluates every rule's allocation on that same pool, so the rules
differ only by their allocation, not by which points were drawn: channel i gets mass p_i (the launch's
:func:`madnis.sampler.channel_probabilities` of the rule's shares), each of its n_i pool points p_i / n_i, and
weight W = w / p_i; the efficiency is <W> / w_max with w_max by MadEvent's rule on that weighted pool. Rules:

- ``w_max``: p_i ∝ w_max_i, the optimum if the estimates were exact (the plugin's rule before this study);
- ``sigma``: p_i ∝ |I_i|;
- ``geometric``: p_i ∝ sqrt(|I_i| w_max_i);
- ``half-half``: half ∝ w_max_i, half ∝ |I_i|.

With ``--chunks K``, each rule instead draws K samples of ``--chunk-points`` points (a launch's generation chunk:
1000 events from 40k-120k points on W+2j), the same seeds for every rule, each unweighted against its own w_max as a
chunk is; the table gives the median (mean) of the K efficiencies.

With ``--generation K`` it runs what a launch's generation runs instead: chunks 1..K of each sampler, by
:func:`madnis_plugin.run.job.make_chunk` with the launch's seeds and its training job's integration, 1000 events
each; a chunk draws a first batch by the channel shares and then tops up in batches towards the shares of its own
points' I_i and w_max_i until it has its events. ``w_max`` is the plugin's own code; another rule replaces w_max_i
by the rule's shares (scaled to the same sum) in both places; ``separate`` (generation only) gives every channel its
own w_max_i by MadEvent's rule (:func:`separate_max_weights`, the plugin's w_max_i before they were chosen together)
where a chunk tops up. The table gives the weighted points the K chunks needed (what a generation's time goes with).

Writes ``benchmarks/results/NAME.{json,md}`` (default ``unweighting_allocation``).

    OMP_NUM_THREADS=1 python benchmarks/unweighting_allocation.py LAUNCH/madnis/jobs/run_01/*/train
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from madnis_plugin.mg5.madevent_run import process_source
from madnis_plugin.run.jobs import JobSpec, integration_from_dict, settings_from_dict
from madnis_plugin.run.source import ProcessSource, channel_part
from madnis_plugin.settings import MadnisSettings

from madnis import MadNIS
from madnis.sampler import channel_probabilities
from madnis.unweighting import madevent_efficiency, max_weight

RESULTS = Path(__file__).resolve().parent / "results"
RULES = {
    "w_max": lambda integral, max_weight: max_weight,
    "sigma": lambda integral, max_weight: integral.abs(),
    "geometric": lambda integral, max_weight: (integral.abs() * max_weight).sqrt(),
    "half-half": lambda integral, max_weight: integral.abs() / integral.abs().sum() + max_weight / max_weight.sum(),
}

FRESH_INTEGRATION_SEED = 4242  # --fresh-integration: the same points for every rule
SEPARATE = "separate"  # --generation only: each channel's own w_max_i where a chunk tops up


def separate_max_weights(
    weights: torch.Tensor, channel: torch.Tensor, n_channels: int, max_overweight: float
) -> torch.Tensor:
    """Each channel's own :func:`madnis.unweighting.max_weight` (0 without a non-zero weight): the w_max_i the
    plugin allocated by before :func:`madnis.unweighting.channel_max_weights` chose them together."""
    magnitude, channel = weights.detach().abs().double().cpu(), channel.cpu()
    out = torch.zeros(n_channels, dtype=torch.float64)
    for i in torch.unique(channel[magnitude > 0]).tolist():
        out[i] = max_weight(magnitude[channel == i], max_overweight)
    return out


def pool_efficiency(p: torch.Tensor, channel: torch.Tensor, within: torch.Tensor, max_overweight: float) -> float:
    """<W> / w_max of the pool under channel masses ``p`` (module docstring): MadEvent's rule with each point's
    frequency p_i / n_i, i.e. the smallest w_max with sum f (W - w_max)+ <= max_overweight sum f W."""
    frequency = (p / torch.bincount(channel, minlength=len(p)).double().clamp(min=1))[channel]
    weight = within.abs() / p[channel]
    order = torch.argsort(weight, descending=True)
    weight, frequency = weight[order], frequency[order]
    total = float((frequency * weight).sum())
    # between the k-th and (k+1)-th largest weights the excess is cumsum(f W)_k - w_max cumsum(f)_k
    candidate = (torch.cumsum(frequency * weight, 0) - max_overweight * total) / torch.cumsum(frequency, 0)
    below = torch.cat([weight[1:], weight.new_zeros(1)])
    inside = (candidate <= weight) & (candidate >= below)
    w_max = float(candidate[inside][0]) if bool(inside.any()) else float(weight[0])
    return total / w_max


def process_name(pdir: Path) -> str:
    """The ``generate`` line of the process's proc_card (what the user typed)."""
    card = pdir.parent.parent / "Cards" / "proc_card_mg5.dat"
    lines = [line.split("generate", 1)[1].strip() for line in card.read_text().splitlines() if "generate" in line]
    return lines[0] if lines else pdir.name


def chunk_efficiencies(madnis: MadNIS, shares: torch.Tensor, chunks: int, points: int) -> list[float]:
    """The efficiency of each of ``chunks`` samples of ``points`` points drawn with channel shares ``shares``."""
    rule = madnis.config.max_overweight
    out = []
    for k in range(chunks):
        sample = madnis.sample_weighted(points, seed=300 + k, share=shares)
        weight = torch.where(sample.ok, sample.weight.double(), 0.0)
        out.append(madevent_efficiency(weight, rule))
    return out


def load_job(job: Path) -> tuple[JobSpec, ProcessSource, MadNIS]:
    """A launch's training job: its spec, its source (the P-dir, or its channel part) and its trained sampler, in a
    process with one torch thread and one bridge worker."""
    torch.set_num_threads(1)
    spec = JobSpec.read(job)
    source = process_source(Path(spec.pdir), MadnisSettings(workers="1"), spec.seed)
    if spec.channels is not None:
        source = channel_part(source, spec.channels, spec.name)
    return spec, source, MadNIS.load(str(job / "sampler.pt"), source.integrand)


def describe(spec: JobSpec) -> dict:
    """A row's sampler: its launch (replaced by an index in main: no machine path is kept), process and name."""
    return {
        "launch": str(Path(spec.pdir).parent.parent),
        "process": process_name(Path(spec.pdir)),
        "sampler": spec.name,
    }


def generation_points(job: Path, rule_name: str, chunks: int, fresh_integration: int = 0) -> dict:
    """Weighted points of chunks 1..``chunks`` of the launch's generation under ``rule_name`` (module docstring;
    run in a fresh process: another rule patches the plugin's allocation). With ``fresh_integration`` points the
    channel shares of the chunks' first batches come from a new integration (the same seed for every rule) with the
    rule's w_max_i instead of the launch's."""
    from madnis_plugin.run import job as generation
    from madnis_plugin.run import sample

    from madnis import integration, unweighting

    if rule_name == SEPARATE:
        sample.channel_max_weights = integration.channel_max_weights = separate_max_weights
    rule = RULES.get(rule_name, RULES["w_max"])

    def allocation(integral: torch.Tensor, max_weights: torch.Tensor) -> torch.Tensor:
        shares = rule(integral.double(), max_weights.double()).clamp(min=0)
        return shares / shares.sum() * max_weights.sum() if shares.sum() > 0 else max_weights

    def channel_max_weights(weights, channel, n_channels, max_overweight):  # where a chunk tops up
        max_weights = unweighting.channel_max_weights(weights, channel, n_channels, max_overweight)
        counts = torch.bincount(channel, minlength=n_channels).double().clamp(min=1)
        integral = torch.zeros(n_channels, dtype=torch.float64).index_add_(0, channel, weights.double()) / counts
        return allocation(integral, max_weights)

    spec, source, madnis = load_job(job)
    result = json.loads((job / "result.json").read_text())
    settings = settings_from_dict(spec.settings)
    madnis.last_result = integration_from_dict(result["integration"])
    if fresh_integration:
        madnis.integrate(fresh_integration, seed=FRESH_INTEGRATION_SEED)
    if rule_name not in ("w_max", SEPARATE):
        sample.channel_max_weights = channel_max_weights
        integral, max_weights = madnis.last_result.channel_tensors()
        first = allocation(integral, max_weights)  # the first batch's shares (the plugin's: the integration's w_max)
        plain = madnis.sample_weighted
        madnis.sample_weighted = lambda n, seed=None, share=None: plain(n, seed, first if share is None else share)
    generation.log = lambda text: None
    points, efficiencies = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for chunk in range(1, chunks + 1):
            out = Path(scratch) / str(chunk)
            generation.make_chunk(madnis, source, settings, spec, chunk, result["efficiency"], out)
            made = json.loads((out / "result.json").read_text())
            points.append(made["weighted_points"])
            efficiencies.append(made["efficiency"])
    return describe(spec) | {"rule": rule_name, "points": points, "efficiencies": efficiencies}


def study(job: Path, pool: int, estimates: int, integration_points: int, chunks: int, chunk_points: int) -> dict:
    spec, _, madnis = load_job(job)
    rule = madnis.config.max_overweight
    active = madnis.sampler.active.cpu()
    estimated = [madnis.integrate(integration_points, seed=1000 + k).channel_tensors() for k in range(estimates)]
    if chunks:
        integral, max_weights = estimated[0]
        efficiencies = {
            name: chunk_efficiencies(madnis, shares(integral, max_weights), chunks, chunk_points)
            for name, shares in RULES.items()
        }
    else:
        mean_integral = sum(integral for integral, _ in estimated) / estimates
        sample = madnis.sample_weighted(pool, seed=77, share=mean_integral.abs())
        within = torch.where(sample.ok, sample.weight.double() * sample.channel_probability.double(), 0.0).cpu()
        efficiencies = {
            name: [
                pool_efficiency(channel_probabilities(shares(i, w), active), sample.channel.cpu(), within, rule)
                for i, w in estimated
            ]
            for name, shares in RULES.items()
        }
    return describe(spec) | {"efficiencies": efficiencies}


def header(title: str, options: str, parallel: str, what: str, names: list[str], ratios: list[str]) -> list[str]:
    """A results file's title, command, machine, date and description lines and the head of its table (a column per
    rule in ``names``, then the ``ratios`` columns)."""
    return [
        f"# Unweighting: {title} (issue 8)",
        "",
        "- command: `OMP_NUM_THREADS=1 python benchmarks/unweighting_allocation.py LAUNCH/madnis/jobs/run_01/*/train "
        f"{options}` (LAUNCH: an `output madnis` directory after a 2-core `generate_events`, default cards)",
        f"- machine: {platform.machine()}, {platform.platform()}, {parallel} at a time, 1 torch thread and 1 bridge "
        "worker each",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- {what}",
        "",
        "| process | launch | sampler | " + " | ".join(names + ratios) + " |",
        "|---|---|---|" + "---|" * (len(names) + len(ratios)),
    ]


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    names = list(RULES)
    if args.chunks:
        options = (
            f"--chunks {args.chunks} --chunk-points {args.chunk_points} --integration-points {args.integration_points}"
        )
        what = (
            f"each rule's shares from one integration of {args.integration_points} points; {args.chunks} samples of "
            f"{args.chunk_points} points per rule (the same seeds), each unweighted against its own w_max (MadEvent's "
            "rule, share 1e-3): median (min - max) of their efficiencies; ratio: the points the same events need, "
            "`w_max`'s / the rule's (the chunks' mean 1 / efficiency: what a generation's time goes with)"
        )
        middle = statistics.median

        def ratio(e: dict, name: str) -> float:
            return statistics.fmean(1 / x for x in e["w_max"]) / statistics.fmean(1 / x for x in e[name])
    else:
        options = f"--pool {args.pool} --estimates {args.estimates} --integration-points {args.integration_points}"
        what = (
            f"each rule's efficiency (MadEvent's rule, share 1e-3) on the same {args.pool} points, its shares from each "
            f"of {args.estimates} integrations of {args.integration_points} points: mean (min - max); ratio: mean / "
            "the mean of `w_max`"
        )
        middle = statistics.fmean

        def ratio(e: dict, name: str) -> float:
            return statistics.fmean(e[name]) / statistics.fmean(e["w_max"])

    lines = header(
        "the channels' allocation from estimated w_max",
        f"{options} --name {args.name}",
        f"{args.processes} samplers",
        f"{what}; launch: the launch the sampler was trained in",
        names,
        [f"{n} / w_max" for n in names[1:]],
    )
    for row in rows:
        e = row["efficiencies"]
        mean = {n: middle(e[n]) for n in names}
        cells = [f"{100 * mean[n]:.3g} % ({100 * min(e[n]):.3g} - {100 * max(e[n]):.3g})" for n in names]
        ratios = [f"{ratio(e, n):.2f}" for n in names[1:]]
        lines.append(
            f"| `{row['process']}` | {row['launch']} | {row['sampler']} | " + " | ".join(cells + ratios) + " |"
        )
    return "\n".join(lines) + "\n"


def generation_markdown(rows: list[dict], args: argparse.Namespace) -> str:
    """The ``--generation`` table: per sampler the points each rule's chunks needed."""
    rules = list(dict.fromkeys(row["rule"] for row in rows))
    samplers = list(dict.fromkeys((row["launch"], row["process"], row["sampler"]) for row in rows))
    total = {(row["launch"], row["sampler"], row["rule"]): sum(row["points"]) for row in rows}
    fresh = f" --fresh-integration {args.fresh_integration}" if args.fresh_integration else ""
    lines = header(
        "the channels' allocation in a launch's generation chunks",
        f"--generation {args.generation}{fresh} --rules {' '.join(rules)} --name {args.name}",
        f"{args.processes} runs",
        f"chunks 1-{args.generation} of each sampler as its launch's generation makes them (1000 events each, the "
        "launch's seeds): the weighted points they needed in all; ratio: `w_max`'s / the rule's"
        + (
            f"; the first batches' channel shares from a new integration of {args.fresh_integration} points with the "
            "rule's w_max_i (the same points for every rule)"
            if args.fresh_integration
            else ""
        ),
        rules,
        [f"w_max / {r}" for r in rules[1:]],
    )
    for launch, process, sampler in samplers:
        points = [total[launch, sampler, r] for r in rules]
        ratios = [f"{points[0] / p:.2f}" for p in points[1:]]
        lines.append(
            f"| `{process}` | {launch} | {sampler} | " + " | ".join([f"{p:,}" for p in points] + ratios) + " |"
        )
    sums = [sum(total[launch, sampler, r] for launch, _, sampler in samplers) for r in rules]
    lines.append(
        "| all | | | " + " | ".join([f"{p:,}" for p in sums] + [f"{sums[0] / p:.2f}" for p in sums[1:]]) + " |"
    )
    efficiency = {(row["launch"], row["sampler"], row["rule"]): row.get("efficiencies") for row in rows}
    if all(efficiency.values()):
        lines += ["", "Mean efficiency of the chunks (each against its own w_max):", ""]
        lines += ["| launch | sampler | " + " | ".join(rules) + " |", "|---|---|" + "---|" * len(rules)]
        for launch, _, sampler in samplers:
            cells = [f"{100 * statistics.fmean(efficiency[launch, sampler, r]):.3g} %" for r in rules]
            lines.append(f"| {launch} | {sampler} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=Path, nargs="+", help="training job directories of launches")
    parser.add_argument("--pool", type=int, default=600_000)
    parser.add_argument("--estimates", type=int, default=4)
    parser.add_argument("--integration-points", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="unweighting_allocation")
    parser.add_argument("--processes", type=int, default=2, help="samplers studied at a time")
    parser.add_argument("--chunks", type=int, default=0, help="compare on this many chunk-sized samples instead")
    parser.add_argument("--chunk-points", type=int, default=80_000)
    parser.add_argument("--generation", type=int, default=0, help="compare in this many generation chunks instead")
    parser.add_argument(
        "--fresh-integration", type=int, default=0, help="with --generation: first batches from a new integration"
    )
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=[*RULES, SEPARATE], help="with --generation")
    args = parser.parse_args(argv)
    if args.generation:
        work = generation_points
        tasks = [(job, rule, args.generation, args.fresh_integration) for job in args.jobs for rule in args.rules]
        table = generation_markdown
    else:
        work, table = study, markdown
        tasks = [
            (job, args.pool, args.estimates, args.integration_points, args.chunks, args.chunk_points)
            for job in args.jobs
        ]
    # a fresh process per task: --generation patches the plugin's allocation for one rule
    with multiprocessing.get_context("spawn").Pool(args.processes, maxtasksperchild=1) as pool:
        rows = pool.starmap(work, tasks, chunksize=1)
    launches = list(dict.fromkeys(row["launch"] for row in rows))
    for row in rows:
        row["launch"] = launches.index(row["launch"]) + 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    (args.out / f"{args.name}.md").write_text(table(rows, args))
    print(table(rows, args))


if __name__ == "__main__":
    main()
