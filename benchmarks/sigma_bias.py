"""Is the quoted cross section unbiased on a heavy weight tail? The plugin's own steps, replicated on a toy.

A short-trained sampler on a matrix element has weights with a power-law tail (``g g > w+ d u~ g``: 1-2 %
unweighting efficiency), and any rule that lets the weights decide how many points follow, or which channel gets
them, dilutes exactly the outliers that carry the tail's share of sigma: the estimate comes out low, by more than
its error can show. This benchmark replicates one source of a launch on :class:`madnis.toys.ParetoChannels` (20
channels, P(w > t) ~ t^-a under a flat sampler, exact integral known): ``--steps`` training steps with fixed channel
weights (the later training batches enter sigma), the training job's integration (:func:`madnis_plugin.run.sample
.integrate`), ``--chunks`` generation chunks of :data:`madnis_plugin.run.jobs.CHUNK_EVENTS` events
(:func:`madnis_plugin.run.job.make_chunk`, the code a launch runs; results/sigma_bias.md has chunks of 1000 events)
and the source's sigma merged as the launch merges it (:class:`madnis_plugin.run.jobs.Accumulated`).

For each tail index a, over ``--replicas`` replicas (each its own training seed): the mean of I_hat / I - 1 with
its standard error (the bias), the rms deviation, the mean quoted relative error and the mean pull, for the
training job's integration, one chunk and the whole source. Writes ``benchmarks/results/NAME.{json,md}``.

    OMP_NUM_THREADS=1 python benchmarks/sigma_bias.py --tail-index 2.1 2.5 --replicas 300
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from madnis_plugin.lhe import EventRecords
from madnis_plugin.run import ProcessSource, RunSettings
from madnis_plugin.run.job import make_chunk
from madnis_plugin.run.jobs import CHUNK_EVENTS, Accumulated, Chunk, JobSpec, settings_to_dict
from madnis_plugin.run.sample import integrate
from madnis_plugin.run.train import train_or_load

from madnis import IntegrationResult, TrainingConfig
from madnis.toys import ParetoChannels

RESULTS = Path(__file__).resolve().parent / "results"
N_CHANNELS = 20
ESTIMATES = ("training job", "one chunk", "source")


def records(r: torch.Tensor, channel: torch.Tensor, generator: np.random.Generator) -> EventRecords:
    out = EventRecords.empty(len(r), 1)
    out.nup[:] = 1
    return out


def replica(tail_index: float, args: argparse.Namespace, seed: int, work: Path) -> dict[str, IntegrationResult]:
    """One source's training job and chunks, as a launch runs them; the three estimates of sigma."""
    source = ProcessSource("P1_pareto", ParetoChannels(N_CHANNELS, tail_index), records)
    training = TrainingConfig(steps=args.steps, batch_size=1024, train_channel_weights=False, seed=seed)
    settings = RunSettings(
        nevents=CHUNK_EVENTS * args.chunks,
        output_dir=work,
        integration_points=args.integration_points,
        training=training,
    )
    trained = train_or_load(0, source, None, settings, lambda line: None)
    integration, points = integrate(trained.madnis, source, settings, seed + 1, lambda line: None)
    spec = JobSpec("generate", source.name, 0, seed, settings_to_dict(settings), chunks=[])
    accumulated = Accumulated.of(points)
    chunks = []
    for chunk in range(1, args.chunks + 1):
        with contextlib.redirect_stdout(io.StringIO()):  # the chunk's log lines
            make_chunk(trained.madnis, source, settings, spec, chunk, work / "chunk")
        chunks.append(Chunk.read(work / "chunk").accumulated)
    for made in chunks:
        accumulated = accumulated.merge(made)
    groups = list(range(N_CHANNELS))
    return {"training job": integration, "one chunk": chunks[0].result(groups), "source": accumulated.result(groups)}


def summary(results: list[dict[str, IntegrationResult]], exact: float) -> dict[str, dict[str, float]]:
    out = {}
    for name in ESTIMATES:
        deviation = np.array([r[name].integral / exact - 1 for r in results])
        error = np.array([r[name].rel_error for r in results])
        out[name] = {
            "bias_permil": 1e3 * float(deviation.mean()),
            "bias_se_permil": 1e3 * float(deviation.std() / math.sqrt(len(deviation))),
            "rms_permil": 1e3 * float(deviation.std()),
            "quoted_error_permil": 1e3 * float(error.mean()),
            "mean_pull": float((deviation / error).mean()),
            "points": float(np.mean([r[name].n_points for r in results])),
        }
    return out


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# Bias of the quoted cross section on a heavy weight tail (`benchmarks/sigma_bias.py`)",
        "",
        f"Command: `{command}`",
        f"Machine: {platform.machine()}, {platform.processor() or platform.platform()}, torch {torch.__version__}, "
        f"one thread; {datetime.date.today().isoformat()}.",
        "",
        "Deviation I_hat / I - 1 of the toy's exact integral, mean over replicas with its standard error (the bias), "
        "its rms over replicas, the mean quoted error and the mean pull.",
        "",
        "| tail index | estimate | points | bias (permil) | rms (permil) | bias / rms | quoted error (permil) | mean pull |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name in ESTIMATES:
            e = row["estimates"][name]
            lines.append(
                f"| {row['tail_index']:g} | {name} | {e['points']:.0f} | {e['bias_permil']:+.2f} +- "
                f"{e['bias_se_permil']:.2f} | {e['rms_permil']:.2f} | {e['bias_permil'] / e['rms_permil']:+.2f} | "
                f"{e['quoted_error_permil']:.2f} | {e['mean_pull']:+.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tail-index", type=float, nargs="+", default=[2.1, 2.5])
    parser.add_argument("--replicas", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--integration-points", type=int, default=10_000)
    parser.add_argument("--name", default="sigma_bias")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/sigma_bias.py " + " ".join(a for a in (argv or sys.argv[1:]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tail_index in args.tail_index:
            start, results = time.time(), []
            for k in range(args.replicas):
                results.append(replica(tail_index, args, 1000 + k, Path(tmp)))
                if (k + 1) % 50 == 0:
                    print(f"tail index {tail_index}: {k + 1} replicas, {time.time() - start:.0f} s", flush=True)
            exact = ParetoChannels(N_CHANNELS, tail_index).exact
            rows.append({"tail_index": tail_index, "replicas": args.replicas, "estimates": summary(results, exact)})
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "name")}
    (args.out / f"{args.name}.json").write_text(
        json.dumps({"command": command, "settings": settings, "rows": rows}, indent=1)
    )
    (args.out / f"{args.name}.md").write_text(markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
