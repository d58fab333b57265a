"""``python -m madnis_plugin.run.job JOB_DIR``: one job of a parallel run, files in, files out.

Why a process of its own: MG5aMC's cluster object (multicore threads, condor, slurm, a cluster plugin) runs
programs, not Python calls. The job reads ``JOB_DIR/spec.json`` (:class:`.jobs.JobSpec`) and either trains a
P-dir and integrates with the trained sampler (``sampler.pt``, ``points.npz``: the integration's weights and
the accumulated sigma of every point the job drew; ``events.npz``: the candidate events of its integration
points, for a lone P-dir all its events when cheap), or loads that sampler and generates one seeded chunk of
events (``events.npz``). Its
``result.json`` is written last; progress lines go to stdout (the job's log).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from madnis import MadNIS

from ..settings import MadnisSettings
from .events import event_records
from .jobs import (
    EVENTS_IN_TRAINING,
    INTEGRAL,
    POINTS,
    SAMPLER,
    Accumulated,
    JobSpec,
    chunk_result,
    chunk_seed,
    integration_from_dict,
    settings_from_dict,
    share_bound,
    write_events_file,
    write_json,
    write_result,
)
from .sample import WeightedPoints, integrate, unweight
from .source import INTEGRATION, ProcessSource, RunSettings, channel_part, stream_seed
from .train import saved_sampler, train_or_load

MIN_FIRST_BATCH = 1000  # weighted points a chunk draws first at least
SUMMARY_KEYS = ("Training MadNIS", "efficiency check", "training stopped", "Reusing trained sampler")


STARTED = time.time()


def log(text: str) -> None:
    """A line of the job's log, with the seconds since the job started (where a job's time goes)."""
    print(f"[{time.time() - STARTED:6.1f} s] {text}", flush=True)


def train(spec: JobSpec, source: ProcessSource, settings: RunSettings, job_dir: Path) -> dict[str, Any]:
    """Train (or re-use) the sampler, integrate with it; the sampler, the integration and its points to files.
    Then unweight the integration's points (as chunk 0, ``events.npz``) for candidate events, as many as this
    P-dir's share can be (:func:`.jobs.share_bound`), in priority order; with ``spec.events_here`` and events that
    need at most EVENTS_IN_TRAINING x the integration's points, draw more points for all ``spec.n_events`` here
    instead of in chunk jobs. ``points.npz`` pools every weighted point the job drew."""
    summary: list[str] = []  # the lines the launch's own log repeats: what was trained or re-used, why it stopped

    def log_and_keep(text: str) -> None:
        log(text)
        if any(key in text for key in SUMMARY_KEYS):
            summary.append(text)

    saved = saved_sampler(source, settings, log_and_keep)

    def estimate(integral: float) -> None:  # the other jobs' share_bound reads it until the integration is in
        write_json(job_dir / INTEGRAL, {"integral": integral, "estimate": True})

    trained = train_or_load(spec.index, source, saved, settings, log_and_keep, spec.n_events or None, estimate)
    integration_seed = stream_seed(spec.seed, spec.index, INTEGRATION)
    integration, points = integrate(trained.madnis, source, settings, integration_seed, log)
    trained.madnis.save(job_dir / SAMPLER)
    write_json(job_dir / INTEGRAL, {"integral": integration.integral})  # bounds the other P-dirs' shares
    needed = spec.n_events / max(integration.unweighting_efficiency, 1e-12)  # weighted points the events need
    complete = spec.events_here and needed <= EVENTS_IN_TRAINING * len(points)
    seed = chunk_seed(spec.seed, spec.index, 0)
    n_events = spec.n_events if complete else share_bound(spec.max_events, integration.integral, spec.other_trainings)
    events = unweight(trained.madnis, points, n_events, source, settings, seed, log, draw_more=complete)
    events = events.in_priority_order()  # each record then does not depend on how many candidates there are
    records = event_records(source, events, np.random.default_rng(seed))
    log(f"  [{source.name}] LHE records of the {len(events.r)} candidate events")
    # every weighted point of this job is in points.npz below: the events file adds none
    write_events_file(job_dir, events, records, Accumulated.empty(source.integrand.n_channels))
    np.savez(job_dir / POINTS, weights=points.integration_weights().numpy(), **Accumulated.of(points).arrays())
    return chunk_result(events) | {
        "events_here": complete,
        "integration": asdict(integration),
        "efficiency": integration.unweighting_efficiency,
        "losses": trained.losses,
        "running_integrals": trained.running_integrals,
        "seconds": trained.seconds,
        "calls": trained.calls,
        "reused_from": None if trained.reused_from is None else str(trained.reused_from),
        "lprup": source.lprup,
        "channel_names": source.channel_names,
        "summary": summary,
    }


def generate(spec: JobSpec, source: ProcessSource, settings: RunSettings, job_dir: Path) -> dict[str, Any]:
    """Chunk ``spec.chunk``: exactly ``spec.n_events`` events from the trained sampler, seeded by the chunk."""
    madnis = MadNIS.load(spec.sampler, source.integrand, device=settings.training.device)
    madnis.last_result = integration_from_dict(spec.integration or {})  # channel probabilities of the run
    seed = chunk_seed(spec.seed, spec.index, spec.chunk)
    points = WeightedPoints(madnis, source)
    expected = math.ceil(1.2 * spec.n_events / max(spec.efficiency, 1e-6))
    points.add(madnis.sample_weighted(min(max(expected, MIN_FIRST_BATCH), settings.weighted_batch), seed=seed))
    events = unweight(madnis, points, spec.n_events, source, settings, seed, log)
    write_events_file(
        job_dir, events, event_records(source, events, np.random.default_rng(seed)), Accumulated.of(points)
    )
    return chunk_result(events)


def run(job_dir: Path) -> None:
    from ..mg5.madevent_run import process_source

    spec = JobSpec.read(job_dir)
    torch.set_num_threads(spec.threads)
    settings = settings_from_dict(spec.settings)
    log(
        f"MadNIS {spec.kind} job {job_dir}: {spec.name}, {spec.workers} bridge worker(s), {spec.threads} torch thread(s)"
    )
    source = process_source(Path(spec.pdir), MadnisSettings(workers=str(spec.workers)), spec.seed)
    library = source.integrand.library
    if spec.channels is not None:
        source = channel_part(source, spec.channels, spec.name)
    try:
        result = (train if spec.kind == "train" else generate)(spec, source, settings, job_dir)
    finally:
        library.close()
    write_result(job_dir, {**result, "job_seconds": time.time() - STARTED})
    log(f"MadNIS {spec.kind} job done in {time.time() - STARTED:.1f} s")


if __name__ == "__main__":
    run(Path(sys.argv[1]).resolve())
