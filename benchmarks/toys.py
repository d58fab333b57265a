"""Toy benchmark: MadNIS vs VEGAS (single- and multi-channel) at a fixed budget of integrand calls.

For each toy of :mod:`madnis.toys` (camel, 4d_mapped, 4d_unmapped) and each method:

- ``vegas``: G.P. Lepage's ``vegas`` package on f over the unit cube (no channel mapping);
- ``vegas_multichannel``: one ``vegas`` integrator per channel on ``alpha_c * value_c`` (the channel-mapped
  integrand times its prior channel weight), results summed;
- ``madnis``: :class:`madnis.MadNIS` (flow + channel weights), half the calls for training, half for the
  final integration.

Every method gets ``--calls`` integrand calls (half adaptation/training, half for the quoted result);
the unweighting efficiency <w>/w_max (w_max by MadEvent's rule: at most 0.1 % of the weight above it, :func:`madnis.unweighting.max_weight`)
is measured on extra weighted samples not counted in the budget. Separately, the time per training
step at batch 1024 on one thread is measured for the 4D toy and the 48-channel 10D toy.

Unweighting table (issue 8): this project's ``madnis`` (TrainingConfig defaults) and the reference library
PyPI ``madnis==1.0.0`` (``madnis-1.0`` rows, run by benchmarks/madnis_reference.py in the Python environment
given by ``--reference-python`` or ``$MADNIS_REFERENCE_PYTHON``; skipped when neither is set) on
``TwoResonances4D(mapped=True)``, measured in the same run: ``--unweighting-steps`` steps x 1024 points, one
thread, then ``--unweighting-points`` weighted points with the channels drawn by their integral;
``sigma_over_I`` = std(w) / mean(w) per point, ``efficiency_trunc_1e-3`` = mean(w) / w_max with MadEvent's
w_max (at most 0.1 % of the weight above it), ``ms_per_step`` = training wall time (VEGAS initialisation
included) / steps.
Writes ``benchmarks/results/toys.md`` and ``toys.json`` (command, machine, date included).

    OMP_NUM_THREADS=1 python benchmarks/toys.py [--calls 2e6] [--reference-python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from madnis import MadNIS, TrainingConfig
from madnis.integrand import Integrand
from madnis.toys import CamelBack1D, ManyChannels10D, TwoResonances4D
from madnis.unweighting import madevent_efficiency

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE_SCRIPT = Path(__file__).resolve().parent / "madnis_reference.py"
EFFICIENCY_SAMPLES = 200_000


def toys() -> dict[str, Integrand]:
    return {
        "camel": CamelBack1D(prior="bw"),
        "4d_mapped": TwoResonances4D(mapped=True),
        "4d_unmapped": TwoResonances4D(mapped=False),
    }


def efficiency_of(weights: torch.Tensor) -> float:
    """<|w|> / w_max with MadEvent's w_max: at most 0.1 % of the total weight above it."""
    return madevent_efficiency(weights, 1e-3)


def record(
    toy: str,
    method: str,
    calls: int,
    integral: float,
    error: float,
    exact: float,
    efficiency: float,
    train_seconds: float,
    ms_per_step: float | None = None,
) -> dict:
    return dict(
        toy=toy,
        method=method,
        calls=calls,
        integral=integral,
        error=error,
        exact=exact,
        rel_std=error / abs(integral),
        pull=(integral - exact) / error,
        efficiency=efficiency,
        train_seconds=train_seconds,
        ms_per_step=ms_per_step,
    )


def run_vegas(name: str, integrand: Integrand, calls: int, multichannel: bool) -> dict:
    """vegas: adapt with calls/2 (10 iterations), quote the weighted average of 10 more iterations."""
    import vegas

    channels = list(range(integrand.n_channels)) if multichannel else [None]
    neval = max(1000, calls // (20 * len(channels)))
    total, variance, n_calls, seconds, weights = 0.0, 0.0, 0, 0.0, []
    for channel in channels:
        counter = {"n": 0}

        @vegas.batchintegrand
        def f(x: np.ndarray) -> np.ndarray:
            r = torch.as_tensor(np.asarray(x), dtype=torch.float64)
            counter["n"] += len(r)
            if channel is None:  # the plain function, no mapping: f(x) with x = r
                return integrand.f(r).numpy()
            c = torch.full((len(r),), channel, dtype=torch.long)
            result = integrand(r, c)
            return (result.alpha_prior[:, channel] * result.value).numpy()

        integrator = vegas.Integrator(integrand.ndim * [[0.0, 1.0]])
        start = time.perf_counter()
        integrator(f, nitn=10, neval=neval)
        seconds += time.perf_counter() - start
        result = integrator(f, nitn=10, neval=neval, adapt=False)
        total += result.mean
        variance += result.sdev**2
        n_calls += counter["n"]
        batch, n_batch = [], 0
        for x, wgt in integrator.random_batch():  # weighted events of this channel, for the efficiency
            batch.append(np.asarray(wgt) * f(x))
            n_batch += len(x)
            if n_batch >= EFFICIENCY_SAMPLES // len(channels):
                break
        w = torch.as_tensor(np.concatenate(batch))
        weights.append(w * (result.mean / float(w.mean())))  # E[w] = I_c
    method = "vegas_multichannel" if multichannel else "vegas"
    return record(
        name,
        method,
        n_calls,
        total,
        math.sqrt(variance),
        integrand.exact,
        efficiency_of(_mix_channels(weights)),
        seconds,
    )


def _mix_channels(weights: list[torch.Tensor]) -> torch.Tensor:
    """Unweighting-ready weights of a multi-channel sample: channel c drawn with p_c ∝ I_c, weight w / p_c."""
    integrals = torch.tensor([float(w.mean()) for w in weights], dtype=torch.float64).abs()
    p = integrals / integrals.sum()
    n = min(len(w) / max(float(pc), 1e-12) for w, pc in zip(weights, p))
    return torch.cat([w[: int(n * float(pc))] / float(pc) for w, pc in zip(weights, p)])


MADNIS_SETTINGS = dict(vegas_pretraining=True, buffered_steps=3, flow_bins=16)


def madnis_config(integrand: Integrand, calls: int, batch_size: int = 1024, **overrides) -> TrainingConfig:
    """Half of the calls for training: VEGAS pre-training, then online steps each followed by
    ``buffered_steps`` steps on buffered points (which cost no calls)."""
    settings = {**MADNIS_SETTINGS, **overrides}
    vegas_calls = settings["vegas_pretraining"] * TrainingConfig.vegas_iterations * batch_size * len(integrand.groups())
    online_steps = max(1, (calls // 2 - vegas_calls) // batch_size)
    return TrainingConfig(steps=online_steps * (settings["buffered_steps"] + 1), batch_size=batch_size, **settings)


def run_madnis(name: str, integrand: Integrand, calls: int, **settings) -> dict:
    m = MadNIS(integrand, madnis_config(integrand, calls, **settings))
    start = time.perf_counter()
    history = m.train()
    seconds = time.perf_counter() - start
    result = m.integrate(max(2, calls - m.n_calls), seed=1)
    n_calls = m.n_calls
    sample = m.sample_weighted(EFFICIENCY_SAMPLES, seed=2)
    weights = torch.where(sample.ok, sample.weight, torch.zeros_like(sample.weight))
    return record(
        name,
        "madnis",
        n_calls,
        result.integral,
        result.error,
        integrand.exact,
        efficiency_of(weights),
        seconds,
        1e3 * seconds / max(1, len(history)),
    )


def ms_per_step(integrand: Integrand, steps: int) -> float:
    """Wall time per training step at batch 1024 (one thread), after a short warm-up; the steps alone (no VEGAS
    pre-training, whatever the defaults)."""
    config = TrainingConfig(steps=steps, batch_size=1024, stratified_warmup_steps=0, vegas_pretraining=False)
    warm = MadNIS(integrand, replace(config, steps=3))
    warm.train()
    m = MadNIS(integrand, config)
    start = time.perf_counter()
    m.train()
    return 1e3 * (time.perf_counter() - start) / steps


def weight_metrics(weights: torch.Tensor) -> dict[str, float]:
    """sigma/I per point and the unweighting efficiency by MadEvent's rule (0.1 % of the weight above w_max)."""
    weights = weights.double()
    return {
        "sigma_over_I": float(weights.std() / weights.mean()),
        "efficiency_trunc_1e-3": efficiency_of(weights),
    }


def madnis_unweighting(steps: int, points: int, seed: int = 0, **settings) -> dict:
    """This project on ``TwoResonances4D(mapped=True)``: ``steps`` x 1024 with TrainingConfig defaults + ``settings``."""
    m = MadNIS(TwoResonances4D(mapped=True), TrainingConfig(steps=steps, batch_size=1024, seed=seed, **settings))
    start = time.perf_counter()
    m.train()
    seconds = time.perf_counter() - start
    sample = m.sample_weighted(points, seed=seed + 1)
    weights = torch.where(sample.ok, sample.weight, torch.zeros_like(sample.weight))
    return dict(
        table="unweighting",
        toy="4d_mapped",
        method="madnis",
        setting=", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults",
        steps=steps,
        points=points,
        **weight_metrics(weights),
        ms_per_step=1e3 * seconds / steps,
    )


def reference_unweighting(python: str, variant: str, steps: int, points: int, seed: int = 0) -> dict:
    """PyPI madnis 1.0 on the same toy and budget, in the environment of ``python`` (see madnis_reference.py)."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "weights.pt"
        command = [python, str(REFERENCE_SCRIPT), "--variant", variant, "--steps", str(steps)]
        command += ["--points", str(points), "--seed", str(seed), "--out", str(out)]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = torch.load(out)
    return dict(
        table="unweighting",
        toy="4d_mapped",
        method="madnis-1.0",
        setting=variant,
        description=result["variant"],
        version=result["version"],
        steps=steps,
        points=points,
        **weight_metrics(result["weights"]),
        ms_per_step=1e3 * result["train_seconds"] / steps,
    )


def unweighting_markdown(rows: list[dict]) -> list[str]:
    """The unweighting table, with ratios to the first madnis-1.0 row (its defaults)."""
    reference = next((r for r in rows if r["method"] == "madnis-1.0"), None)
    lines = [
        "",
        "## Unweighting: madnis vs PyPI madnis 1.0 (same run, same budget)",
        "",
        "TwoResonances4D(mapped=True), steps x 1024 points, one thread; weighted points with channels drawn by their "
        "integral; efficiency = mean(w) / w_max with at most 0.1 % of the weight above w_max (MadEvent's rule); "
        "ms/step = training wall time (VEGAS initialisation included) / steps. Ratios: to madnis 1.0 defaults.",
        "",
        "| library | setting | steps | points | sigma/I | efficiency | ms/step | eff. ratio | ms/step ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratios = "- | -"
        if reference is not None:
            eff = r["efficiency_trunc_1e-3"] / reference["efficiency_trunc_1e-3"]
            ratios = f"{eff:.2f} | {r['ms_per_step'] / reference['ms_per_step']:.2f}"
        lines.append(
            f"| {r['method']} | {r['setting']} | {r['steps']} | {r['points']} | {r['sigma_over_I']:.3f} | "
            f"{r['efficiency_trunc_1e-3']:.3f} | {r['ms_per_step']:.1f} | {ratios} |"
        )
    return lines


def markdown(records: list[dict], command: str, settings: dict) -> str:
    lines = [
        "# Toy benchmark: MadNIS vs VEGAS",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.processor() or platform.machine()}, {platform.platform()}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()} (shared 2-core machine: timings are upper bounds)",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "- efficiency: <w>/w_max on extra weighted samples, w_max by MadEvent's rule (at most 0.1 % of the weight above it)",
        f"- madnis: half the calls for training (VEGAS pre-training + online steps), half for the result; "
        f"settings {settings} (batch 1024, other TrainingConfig defaults)",
        "- madnis_speed rows: wall ms per training step, batch 1024, one thread",
        "",
        "| toy | method | calls | integral | error | exact | rel_std | pull | efficiency | train s | ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(
            f"| {r['toy']} | {r['method']} | {fmt(r['calls'], 'd')} | {fmt(r['integral'], '.6g')} | "
            f"{fmt(r['error'], '.2g')} | {fmt(r['exact'], '.6g')} | {fmt(r['rel_std'], '.2e')} | "
            f"{fmt(r.get('pull'), '.2f')} | {fmt(r['efficiency'], '.3f')} | {fmt(r['train_seconds'], '.1f')} | "
            f"{fmt(r['ms_per_step'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=float, default=2e6, help="integrand calls per method and toy")
    parser.add_argument("--toys", nargs="*", default=list(toys()), help="subset of camel 4d_mapped 4d_unmapped")
    parser.add_argument("--methods", nargs="*", default=["vegas", "vegas_multichannel", "madnis"])
    parser.add_argument("--speed-steps", type=int, default=30, help="steps timed for ms/step (0: skip)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="TrainingConfig overrides for the madnis rows, e.g. flow_bins=16",
    )
    parser.add_argument(
        "--reference-python",
        default=os.environ.get("MADNIS_REFERENCE_PYTHON"),
        help="python of an environment with PyPI madnis==1.0.0 for the madnis-1.0 rows "
        "(default $MADNIS_REFERENCE_PYTHON; unset: no madnis-1.0 rows)",
    )
    parser.add_argument("--unweighting-steps", type=int, default=1000, help="training steps of the unweighting table")
    parser.add_argument("--unweighting-points", type=int, default=200_000, help="weighted points per unweighting row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    settings = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(1)
    calls = int(args.calls)
    records = []
    for name in args.toys:
        integrand = toys()[name]
        for method in args.methods:
            if method == "madnis":
                rec = run_madnis(name, integrand, calls, **settings)
            else:
                rec = run_vegas(name, integrand, calls, multichannel=method == "vegas_multichannel")
            print(json.dumps(rec), flush=True)
            records.append(rec)
    if args.speed_steps:
        for name, integrand in (("4d_mapped", TwoResonances4D()), ("10d_48ch", ManyChannels10D())):
            ms = ms_per_step(integrand, args.speed_steps)
            rec = dict(
                toy=name,
                method="madnis_speed",
                calls=None,
                integral=None,
                error=None,
                exact=integrand.exact,
                rel_std=None,
                efficiency=None,
                train_seconds=None,
                ms_per_step=ms,
            )
            print(json.dumps(rec), flush=True)
            records.append(rec)
    unweighting = []
    if args.unweighting_steps:
        steps, points = args.unweighting_steps, args.unweighting_points
        unweighting.append(madnis_unweighting(steps, points))
        print(json.dumps(unweighting[-1]), flush=True)
        for variant in ("defaults", "vegas_cosine") if args.reference_python else ():
            unweighting.append(reference_unweighting(args.reference_python, variant, steps, points))
            print(json.dumps(unweighting[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    arguments = " ".join(sys.argv[1:]).replace(str(args.reference_python), "$MADNIS_REFERENCE_PYTHON")
    command = f"OMP_NUM_THREADS=1 python benchmarks/toys.py {arguments}".strip()
    if args.reference_python and "--reference-python" not in arguments:
        command = f"MADNIS_REFERENCE_PYTHON=<venv with madnis==1.0.0>/bin/python {command}"
    (args.out / "toys.json").write_text(json.dumps(records + unweighting, indent=1) + "\n")
    text = markdown(records, command, {**MADNIS_SETTINGS, **settings})
    text += "\n".join(unweighting_markdown(unweighting)) + "\n" if unweighting else ""
    (args.out / "toys.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
