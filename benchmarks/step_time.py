"""Cost of a training step and of a weighted point, baseline commit vs this tree, measured in one run.

Why: issue 12 ("cheaper points") sets goals on one thread: a training step at batch 1024 on
``ManyChannels10D`` <= 40 ms and on ``TwoResonances4D`` <= 17 ms; drawing a weighted point on
``g g > w+ d u~ g`` costs no more than its Fortran matrix element. The cores of the benchmark machine
are shared, so a number measured yesterday says little: this script measures the baseline and the
current code back to back, alternating them ``--repeats`` times, and reports medians.

Every measurement runs in a fresh Python process with ``torch.set_num_threads(1)``. The baseline's
``madnis`` and ``madnis_plugin`` come from a ``git worktree`` of ``--baseline`` (created under
``--worktree`` unless it exists); the Fortran bridge is this tree's in both, so only the Python side
differs. Measurements:

- ``step``: ms per training step (online, integrand included), batch 1024, default ``TrainingConfig``
  but ``stratified_warmup_steps=0``, ``vegas_pretraining=False`` and a constant learning rate (the
  steps alone, whatever the defaults), after a 3-step warm-up; wall and CPU time of the process.
- ``point`` (with ``--pdir``, a SubProcesses/P* dir of ``g g > w+ d u~ g``): a sampler with the default
  ``TrainingConfig`` (but no VEGAS pre-training and a constant learning rate, the same in both trees) is
  trained for ``--point-train-steps`` steps, then ``sample_weighted`` draws ``--points`` points (one
  batch of ``integration_batch_size``); per point: total wall time, Fortran time inside
  the bridge worker (``ProcessLibrary.fortran_seconds``), the rest of the integrand call (transfer to
  and from the worker, conversions) and MadNIS's own share (flow, channel weights, weights, Python).

Writes benchmarks/results/step_time.json (every sample) and step_time.md (medians).

    python benchmarks/step_time.py --baseline 559adc6 --pdir WJJ_OUTPUT/SubProcesses/P1_gg_wpqqg
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TOYS = {"10d_48ch": "ManyChannels10D", "4d_mapped": "TwoResonances4D"}
GOALS_MS = {"10d_48ch": 40.0, "4d_mapped": 17.0}


def measure_step(toy: str, steps: int) -> dict[str, float]:
    """ms per training step at batch 1024 on one toy (runs in the worker process)."""
    import torch

    from madnis import MadNIS, TrainingConfig
    from madnis import toys as toy_module

    integrand = getattr(toy_module, TOYS[toy])()
    settings = dict(batch_size=1024, stratified_warmup_steps=0, vegas_pretraining=False, lr_schedule="constant")
    MadNIS(integrand, TrainingConfig(steps=3, **settings)).train()
    madnis = MadNIS(integrand, TrainingConfig(steps=steps, **settings))
    start, cpu_start = time.perf_counter(), time.process_time()
    madnis.train()
    return {
        "ms_per_step": 1e3 * (time.perf_counter() - start) / steps,
        "cpu_ms_per_step": 1e3 * (time.process_time() - cpu_start) / steps,
        "threads": torch.get_num_threads(),
    }


class _TimedIntegrand:
    """Forwards to an integrand and adds up the wall and CPU time (this process) spent in its calls."""

    def __init__(self, integrand):
        self.integrand, self.seconds, self.cpu_seconds = integrand, 0.0, 0.0

    def __getattr__(self, name):
        return getattr(self.integrand, name)

    def __call__(self, r, channel):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return self.integrand(r, channel)
        finally:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.process_time() - cpu_start


def measure_point(pdir: str, points: int, train_steps: int) -> dict[str, float]:
    """us per weighted point on a P-dir, split into Fortran, the rest of the integrand call and MadNIS."""
    from madnis_plugin.bridge_integrand import BridgeIntegrand

    from fortran_bridge import ProcessLibrary
    from madnis import MadNIS, TrainingConfig

    # the same training in both trees whatever their defaults: the same points, so the same Fortran cost
    config = TrainingConfig(
        steps=train_steps, integration_batch_size=points, vegas_pretraining=False, lr_schedule="constant"
    )
    with ProcessLibrary(Path(pdir), seed=1, workers=1) as library:
        madnis = MadNIS(BridgeIntegrand(library), config)
        madnis.train()
        madnis.sample_weighted(min(points, 1000), seed=2)  # warm-up at a small batch
        timed = _TimedIntegrand(madnis.integrand.integrand)
        madnis.integrand.integrand = timed
        fortran_before = library.fortran_seconds
        start, cpu_start = time.perf_counter(), time.process_time()
        madnis.sample_weighted(points, seed=3)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        fortran = library.fortran_seconds - fortran_before
    per_point = 1e6 / points
    return {
        "total_us": total * per_point,
        "fortran_us": fortran * per_point,
        "bridge_rest_us": (timed.seconds - fortran) * per_point,
        "madnis_us": (total - timed.seconds) * per_point,
        "not_fortran_us": (total - fortran) * per_point,
        "madnis_cpu_us": (cpu - timed.cpu_seconds) * per_point,
    }


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    if args.worker == "step":
        result = measure_step(args.toy, args.steps)
    else:
        result = measure_point(args.pdir, args.points, args.point_train_steps)
    print(json.dumps(result))


def baseline_path(commit: str, worktree: Path) -> Path:
    """A directory whose ``madnis`` and ``madnis_plugin`` are the baseline's (symlinks into a worktree)."""
    if not worktree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), commit], check=True)
    head = subprocess.run(["git", "-C", str(worktree), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    wanted = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit], capture_output=True, text=True, check=True)
    if head.stdout != wanted.stdout:
        raise SystemExit(f"{worktree} is at {head.stdout.strip()}, not {commit}: remove it or pass another --worktree")
    packages = worktree.parent / f"{worktree.name}-packages"
    packages.mkdir(exist_ok=True)
    for name, target in (("madnis", worktree / "madnis"), ("madnis_plugin", worktree / "PLUGIN" / "madnis_plugin")):
        link = packages / name
        if not link.exists():
            link.symlink_to(target)
    return packages


def run_worker(python_path: Path | None, arguments: list[str]) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(python_path), env.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", *arguments],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(Path(__file__).resolve().parent),
    )
    if result.returncode != 0:
        raise SystemExit(f"worker {arguments} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def git_head() -> str:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "madnis", "PLUGIN"], capture_output=True)
    return head.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def markdown(report: dict) -> str:
    lines = [
        "# Cost of a training step and of a weighted point (issue 12, item 2)",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {report['machine']}; load average {report['load_before']} before, {report['load_after']} after "
        "(the 2 cores are shared with other jobs: the trees are measured alternately, medians of the repeats)",
        f"- date: {report['date']}; baseline {report['baseline']}, current {report['current']}",
        "- one torch thread in every measurement, each in a fresh process; Fortran bridge of the current tree in both",
        "",
        "| measurement | goal | baseline (median) | current (median) | speed-up | samples baseline / current |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        base, current = row.get("baseline"), row["current"]
        fmt = lambda values: " ".join(f"{v:.1f}" for v in values)  # noqa: E731
        lines.append(
            f"| {row['name']} | {row['goal']} | {'-' if base is None else f'{statistics.median(base):.1f}'} | "
            f"{statistics.median(current):.1f} | "
            f"{'-' if not base else f'{statistics.median(base) / statistics.median(current):.2f}x'} | "
            f"{'-' if base is None else fmt(base)} / {fmt(current)} |"
        )
    lines += [
        "",
        "Training step: time per step including the toy integrand, batch 1024, no VEGAS pre-training; wall "
        "time and the process's CPU time (less sensitive to other jobs on the shared cores: it leaves out the "
        "time spent waiting for a core).",
        "Weighted point: `sample_weighted` on a sampler with the default TrainingConfig after a short training; "
        "'not Fortran' = total - Fortran time inside the bridge worker (goal: <= Fortran); 'MadNIS' excludes "
        "the whole integrand call (bridge transfer and conversions are in 'bridge rest'); its CPU time is this "
        "process's, outside the integrand calls.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="commit to compare with (omit: current tree only)")
    parser.add_argument("--worktree", type=Path, default=Path(tempfile.gettempdir()) / "madnis_step_time_baseline")
    parser.add_argument("--pdir", help="SubProcesses/P* dir of g g > w+ d u~ g (omit: no per-point row)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--steps", type=int, default=100, help="timed training steps per measurement (20 were too noisy here)"
    )
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--point-train-steps", type=int, default=20)
    parser.add_argument("--worker", choices=["step", "point"], help=argparse.SUPPRESS)
    parser.add_argument("--toy", choices=sorted(TOYS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    trees: dict[str, Path | None] = {"current": None}
    if args.baseline:
        trees = {"baseline": baseline_path(args.baseline, args.worktree), **trees}
    jobs = [(f"training step, {toy} [ms]", ["step", "--toy", toy, "--steps", str(args.steps)]) for toy in TOYS]
    if args.pdir:
        jobs.append(("weighted point", ["point", "--pdir", args.pdir, "--points", str(args.points),
                                        "--point-train-steps", str(args.point_train_steps)]))  # fmt: skip
    load_before = os.getloadavg()[0]
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for name, arguments in jobs:
            for tree, path in trees.items():
                result = run_worker(path, arguments)
                samples.setdefault((name, tree), []).append(result)
                print(f"[{repeat + 1}/{args.repeats}] {tree:8s} {name}: {json.dumps(result)}", flush=True)

    rows = []
    for toy in TOYS:
        name = f"training step, {toy} [ms]"
        for key, label in (("ms_per_step", "wall"), ("cpu_ms_per_step", "CPU")):
            rows.append(
                {
                    "name": f"{name}, {label}",
                    "goal": f"<= {GOALS_MS[toy]:.0f} ms",
                    **{tree: [s[key] for s in samples[(name, tree)]] for tree in trees},
                }
            )
    if args.pdir:
        for key, label in (
            ("total_us", "weighted point: total [us]"),
            ("fortran_us", "weighted point: Fortran (in the worker) [us]"),
            ("not_fortran_us", "weighted point: not Fortran [us]"),
            ("bridge_rest_us", "weighted point: bridge rest (transfer, conversions) [us]"),
            ("madnis_us", "weighted point: MadNIS (flow, channel weights, Python) [us]"),
            ("madnis_cpu_us", "weighted point: MadNIS, CPU time [us]"),
        ):
            rows.append(
                {
                    "name": label,
                    "goal": "<= Fortran" if key == "not_fortran_us" else "-",
                    **{tree: [s[key] for s in samples[("weighted point", tree)]] for tree in trees},
                }
            )
    command = "python benchmarks/step_time.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "command": command,
        "machine": f"{platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "baseline": args.baseline,
        "current": git_head(),
        "load_before": round(load_before, 1),
        "load_after": round(os.getloadavg()[0], 1),
        "repeats": args.repeats,
        "rows": rows,
        "samples": {f"{name} | {tree}": values for (name, tree), values in samples.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "step_time.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "step_time.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
