"""MadNIS alone on one MadEvent P-dir, measured against stock MadEvent reference numbers.

Why: stock survey/refine on a 2->4 process takes minutes and its numbers are already in
../shared/reference/mg5_3.5.7_baselines.md, so this benchmark runs only the MadNIS side, with the
plugin's default run_card settings (``MadnisSettings``), through the same pieces the plugin uses
(``fortran_bridge.ProcessLibrary`` -> ``BridgeIntegrand`` -> ``madnis.MadNIS``), and records what the
plugin's launch does not print: matrix-element calls, time per training step, the unweighting
efficiency of the final sampler on many weighted points and the projected time to 1e6 events.
Writes ``benchmarks/results/<output>`` (markdown) and the same name with ``.json`` (settings and measurements).

    python benchmarks/madnis_only.py WJJ_OUTPUT/SubProcesses/P1_gg_wpqqg --reference 109.9 0.284 \
        --reference-efficiency 0.016 --reference-seconds 179 --reference-points 1581732 \
        --reference-integration-seconds 162 --steps 1000 3000 --weighted-points 300000 --output wjj.md

The P-dir comes from ``output madnis DIR`` (or ``output madevent``) with MG5aMC's default cards.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from madnis_plugin.bridge_integrand import BridgeIntegrand
from madnis_plugin.settings import MadnisSettings, card_training

from fortran_bridge import ProcessLibrary
from madnis import MadNIS
from madnis.unweighting import max_weight, overweight_share, unweighting_efficiency

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    steps: int
    sigma: float
    error: float
    train_calls: int
    total_calls: int
    train_seconds: float
    integrate_seconds: float
    weighted_points: int
    sample_seconds: float
    efficiency: dict[str, float]  # w_max definition -> <w>/w_max
    overweight: dict[str, float]  # w_max definition -> share of the total weight above w_max
    failed: int  # non-finite results
    crashed: int  # points that stopped the Fortran (isolated by the bridge, weight 0)
    channel_weights: str  # "trained" or "fixed at alpha^MG" (the scale depends on the channel)

    @property
    def seconds_per_step(self) -> float:
        return self.train_seconds / self.steps if self.steps else 0.0

    def seconds_to(self, n_events: int, w_max: str = "truncation 1%") -> float:
        """Training + integration + drawing n_events / efficiency weighted points at the measured rate."""
        per_point = self.sample_seconds / self.weighted_points
        return self.train_seconds + self.integrate_seconds + n_events / self.efficiency[w_max] * per_point


W_MAX_DEFINITIONS = {
    "truncation 1%": "MadEvent's combine_events rule (lhe_parser unweight, trunc_error = 1e-2, madnis.unweighting."
    "max_weight): the smallest w_max whose overweights exceed it by at most 1 % of the total weight",
    "truncation 0.1%": "the same rule with 0.1 % (TrainingConfig.max_overweight default, what the plugin's events use)",
    "max": "the largest weight of all weighted points (no overweights)",
}


def w_max_values(weights: torch.Tensor) -> dict[str, float]:
    return {
        "truncation 1%": max_weight(weights, 0.01),
        "truncation 0.1%": max_weight(weights, 1e-3),
        "max": float(weights.abs().max()),
    }


def measure(pdir: Path, settings: MadnisSettings, seed: int, weighted_points: int, log=print) -> Measurement:
    """Train with ``settings``, integrate, draw ``weighted_points`` and unweight them against w_max."""
    config = settings.training_config(seed)
    with ProcessLibrary(pdir, seed=seed, workers=settings.fixed_workers() or 1) as library:
        integrand = BridgeIntegrand(library)
        channel_weights = "trained" if integrand.channel_weights_trainable else "fixed at alpha^MG"
        log(
            f"{integrand.name}: {integrand.n_channels} channels, ndim {integrand.ndim}, {settings.training.steps} steps, "
            f"channel weights {channel_weights}"
        )
        madnis = MadNIS(integrand, config)
        start = time.time()

        def progress(p) -> None:
            if p.step % 100 == 0 or p.step == p.steps - 1:
                log(
                    f"  step {p.step + 1:5d}/{p.steps} loss {p.loss:10.4e} sigma {p.integral:9.5g} "
                    f"+- {100 * p.rel_error:5.2f}%  {time.time() - start:6.0f} s"
                )

        history = madnis.train(progress)
        train_seconds, train_calls = time.time() - start, madnis.n_calls
        start = time.time()
        result = madnis.integrate(settings.integration_points)
        integrate_seconds = time.time() - start
        log(f"  sigma = {result.integral:.5g} +- {result.error:.3g} pb ({integrate_seconds:.0f} s)")
        start = time.time()
        sample = madnis.sample_weighted(weighted_points, seed=seed + 1)
        sample_seconds = time.time() - start
        weights = sample.weight.double().cpu().abs()
        w_max = w_max_values(weights)
        m = Measurement(
            steps=len(history),
            sigma=result.integral,
            error=result.error,
            train_calls=train_calls,
            total_calls=madnis.n_calls,
            train_seconds=train_seconds,
            integrate_seconds=integrate_seconds,
            weighted_points=weighted_points,
            sample_seconds=sample_seconds,
            efficiency={k: unweighting_efficiency(weights, w) for k, w in w_max.items()},
            overweight={k: overweight_share(weights, w) for k, w in w_max.items()},
            failed=madnis.integrand.n_failed,
            crashed=int(getattr(library, "n_crashed", 0)),
            channel_weights=channel_weights,
        )
        log(f"  {m}")
        return m


def table(
    process: str, runs: list[Measurement], args: argparse.Namespace, settings: MadnisSettings, command: str
) -> str:
    ref_sigma, ref_error = args.reference
    stock_rate = args.reference_points / args.reference_integration_seconds
    stock_1e6 = 1e6 / args.reference_efficiency / stock_rate
    load = os.getloadavg()[0]
    head = (
        "| | stock MadEvent 3.5.7 (reference numbers) | " + " | ".join(f"MadNIS, {m.steps} steps" for m in runs) + " |"
    )
    rows = [head, "|---|---|" + "---|" * len(runs)]

    def row(name: str, stock: str, cell) -> None:
        rows.append(f"| {name} | {stock} | " + " | ".join(cell(m) for m in runs) + " |")

    def pull(m: Measurement) -> float:
        return (m.sigma - ref_sigma) / (ref_error**2 + m.error**2) ** 0.5

    row("sigma [pb]", f"{ref_sigma:.4g} +- {ref_error:.3g}", lambda m: f"{m.sigma:.4g} +- {m.error:.3g}")
    row("pull vs stock", "-", lambda m: f"{pull(m):+.1f}")
    for key in W_MAX_DEFINITIONS:
        row(
            f"unweighting efficiency, w_max {key} (overweight share)",
            f"{100 * args.reference_efficiency:.1f} % (primary unweighted / refine points)"
            if key == "truncation 1%"
            else "-",
            lambda m, k=key: f"{100 * m.efficiency[k]:.2f} % ({100 * m.overweight[k]:.2f} %)",
        )
    row("matrix-element calls: training", "-", lambda m: f"{m.train_calls:,}")
    row(
        "matrix-element calls: all (training + integration + weighted sample)",
        f"{args.reference_points:,} (survey + refine)",
        lambda m: f"{m.total_calls:,}",
    )
    row("training wall time", "-", lambda m: f"{m.train_seconds:.0f} s")
    row("time per training step (online or buffered)", "-", lambda m: f"{1e3 * m.seconds_per_step:.0f} ms")
    row(
        "integration wall time",
        f"{args.reference_integration_seconds:.0f} s (survey + refine)",
        lambda m: f"{m.integrate_seconds:.0f} s ({settings.integration_points:,} points)",
    )
    row(
        "weighted-point rate",
        f"{stock_rate:,.0f} points/s (survey + refine)",
        lambda m: f"{m.weighted_points / m.sample_seconds:,.0f} points/s",
    )
    row(
        f"time to {args.reference_events:,} events",
        f"{args.reference_seconds:.0f} s (measured launch)",
        lambda m: f"{m.seconds_to(args.reference_events):.0f} s (projected)",
    )
    row("time to 1e6 events (projected)", f"{stock_1e6:,.0f} s", lambda m: f"{m.seconds_to(1_000_000):,.0f} s")
    row("failed points: NaN/inf, Fortran STOP (weight 0)", "-", lambda m: f"{m.failed}, {m.crashed}")
    return "\n".join(
        [
            f"## MadNIS on `{process}` ({Path(args.pdir).name}) vs stock MadEvent reference numbers",
            "",
            f"- command: `{command}`",
            f"- machine: {platform.node()}, {os.cpu_count()} cores ({_cpu_model()}), python {platform.python_version()}, "
            f"torch {torch.__version__}, 1 torch thread, {settings.fixed_workers() or 1} bridge worker(s); "
            f"the 2 cores were shared with other jobs (load average {load:.1f} at the end): times are noisy",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- settings: plugin defaults (`MadnisSettings()`: steps = online + {settings.training.buffered_steps} buffered per "
            f"online, batch {settings.training.batch_size}, lr {settings.training.learning_rate} {settings.training.lr_schedule}, loss {settings.training.loss}, "
            f"integration {settings.integration_points:,} points) except madnis_steps{overridden(args.set)}; seed {args.seed}; "
            f"{args.weighted_points:,} weighted points for the unweighting efficiency; run_card of the process "
            f"directory (channel weights {', '.join(sorted({m.channel_weights for m in runs}))})",
            "- stock MadEvent: reference numbers from ../shared/reference/mg5_3.5.7_baselines.md (not rerun)",
            "",
            *rows,
            "",
            "w_max definitions: " + "; ".join(f"{k}: {v}" for k, v in W_MAX_DEFINITIONS.items()) + ". "
            "Overweight share: sum((w - w_max)+) / sum(w), the weight MadEvent would truncate (the plugin keeps "
            "overweights with weight w/w_max instead).",
            "Projections: MadNIS = training + integration + 1e6 / efficiency(truncation 1%) weighted points at the measured "
            "weighted-point rate (LHE writing not included); stock = 1e6 / primary efficiency refine points at its "
            "survey + refine point rate (compilation not included).",
            "",
        ]
    )


def overridden(assignments: list[str]) -> str:
    return "".join(f" and `{a}`" for a in assignments)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_override(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` with VALUE read as JSON (numbers, true/false, null), else as a string."""
    name, _, value = text.partition("=")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pdir", type=Path, help="SubProcesses/P* directory")
    parser.add_argument("--process", default="g g > w+ d u~ g", help="process name for the table")
    parser.add_argument("--reference", type=float, nargs=2, required=True, metavar=("SIGMA", "ERROR"))
    parser.add_argument("--reference-efficiency", type=float, required=True)
    parser.add_argument("--reference-seconds", type=float, required=True, help="stock launch wall time")
    parser.add_argument("--reference-events", type=int, default=10000)
    parser.add_argument("--reference-points", type=int, required=True, help="stock survey + refine points")
    parser.add_argument("--reference-integration-seconds", type=float, required=True, help="survey + refine time")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[MadnisSettings().training.steps], help="madnis_steps (one run each)"
    )
    parser.add_argument("--weighted-points", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="wjj.md", help="file under benchmarks/results")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a TrainingConfig field of the defaults, e.g. train_channel_weights=false (repeatable)",
    )
    args = parser.parse_args(argv)
    overrides = dict(parse_override(text) for text in args.set)
    torch.set_num_threads(1)
    runs = []
    for steps in args.steps:
        settings = MadnisSettings(training=replace(card_training(), steps=steps, **overrides))
        runs.append(
            measure(args.pdir, settings, args.seed, args.weighted_points, log=lambda text: print(text, flush=True))
        )
    command = "python benchmarks/madnis_only.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = table(args.process, runs, args, settings, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.output).write_text(f"# {args.process}: MadNIS vs stock MadEvent\n\n" + text)
    record = dict(
        process=args.process,
        pdir=Path(args.pdir).name,
        command=command,
        settings=settings.training.to_dict(),
        integration_points=settings.integration_points,
        seed=args.seed,
        reference=dict(sigma=args.reference[0], error=args.reference[1], efficiency=args.reference_efficiency),
        runs=[asdict(m) for m in runs],
    )
    (RESULTS / args.output).with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
