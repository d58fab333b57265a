"""``python -m madnis_plugin.run.job JOB_DIR``: one job of a parallel run, files in, files out.

Why a process of its own: MG5aMC's cluster object (multicore threads, condor, slurm, a cluster plugin) runs
programs, not Python calls. The job reads ``JOB_DIR/spec.json`` (:class:`.jobs.JobSpec`) and either trains a
P-dir and integrates with the trained sampler (``sampler.pt``, ``points.npz``: the integration's weights and
the accumulated sigma of every point the job drew; ``events.npz``: the candidate events of its integration
points, for a lone P-dir all its events when cheap), or loads that sampler and generates seeded chunks of
events (each ``chunk_NNN/events.npz``). Its ``result.json`` is written last; a training job then makes its
source's first chunks ahead while other training jobs still train (:func:`ahead`). Progress lines go to stdout
(the job's log).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fortran_bridge import BridgeError
from madnis import MadNIS

from ..settings import MadnisSettings
from .events import event_records
from .jobs import (
    CHUNK_EVENTS,
    EVENTS_IN_TRAINING,
    INTEGRAL,
    POINTS,
    SAMPLER,
    Accumulated,
    JobSpec,
    ahead_open,
    chunk_dir,
    chunk_result,
    chunk_seed,
    integration_from_dict,
    integration_points_here,
    precision_dir,
    projected_share,
    settings_from_dict,
    share_bound,
    workers_now,
    write_events_file,
    write_json,
    write_result,
)
from .sample import (
    EventPlan,
    UnweightingStopped,
    WeightedPoints,
    draw_for_precision,
    integrate,
    top_up_size,
    unweight,
)
from .source import INTEGRATION, PRECISION, ProcessSource, RunSettings, channel_part, stream_seed
from .train import saved_sampler, train_or_load

SUMMARY_KEYS = (
    "Training MadNIS",
    "parameters after step",
    "efficiency check",
    "training stopped",
    "Reusing trained sampler",
    "bridge workers from now on",
    "no longer draws a region",  # a failed reach check (madnis.reach)
)
GROW_CHECK_SECONDS = 1.0  # how often a job looks for cores its neighbours left (a few file checks)


STARTED = time.time()


def log(text: str) -> None:
    """A line of the job's log, with the seconds since the job started (where a job's time goes)."""
    print(f"[{time.time() - STARTED:6.1f} s] {text}", flush=True)


def train(spec: JobSpec, source: ProcessSource, settings: RunSettings, job_dir: Path) -> tuple[dict[str, Any], MadNIS]:
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

    def estimate(integral: float) -> None:  # the other jobs read it until the integration is in
        write_json(job_dir / INTEGRAL, {"integral": integral, "estimate": True})

    n_events = spec.n_events or None  # one P-dir (or part): exact
    if spec.others and not spec.events_here:
        n_events = projected_share(spec.max_events, spec.others)
    trained = train_or_load(spec.index, source, saved, settings, log_and_keep, n_events, estimate)
    integration_seed = stream_seed(spec.seed, spec.index, INTEGRATION)
    n_points = integration_points_here(settings.integration_points, trained.running_integral, spec.others)
    integration, points = integrate(trained.madnis, source, settings, integration_seed, log_and_keep, n_points)
    trained.madnis.save(job_dir / SAMPLER)
    write_json(job_dir / INTEGRAL, {"integral": integration.integral})  # bounds the other P-dirs' shares
    needed = spec.n_events / max(integration.unweighting_efficiency, 1e-12)  # weighted points the events need
    complete = spec.events_here and needed <= EVENTS_IN_TRAINING * len(points)
    seed = chunk_seed(spec.seed, spec.index, 0)
    n_events = spec.n_events if complete else share_bound(spec.max_events, integration.integral, spec.others)
    events = unweight(trained.madnis, points, n_events, source, settings, seed, log, draw_more=complete)
    events = events.in_priority_order()  # each record then does not depend on how many candidates there are
    records = event_records(source, events, np.random.default_rng(seed))
    log(f"  [{source.name}] LHE records of the {len(events.r)} candidate events")
    # every weighted point of this job is in points.npz below: the events file adds none
    write_events_file(job_dir, events, records, Accumulated.empty(source.integrand.n_channels))
    np.savez(job_dir / POINTS, weights=points.integration_weights().numpy(), **Accumulated.of(points).arrays())
    return chunk_result(events) | {
        "candidates": len(events.r),
        "events_here": complete,
        "integration": asdict(integration),
        "efficiency": integration.unweighting_efficiency,
        "losses": trained.losses,
        "running_integrals": trained.running_integrals,
        "seconds": trained.seconds,
        "calls": trained.calls,
        "calls_inside": trained.calls_inside,
        "reused_from": None if trained.reused_from is None else str(trained.reused_from),
        "lprup": source.lprup,
        "channel_names": source.channel_names,
        "record_evaluations": source.record_evaluations,
        "summary": summary,
    }, trained.madnis


def make_chunk(
    madnis: MadNIS,
    source: ProcessSource,
    settings: RunSettings,
    spec: JobSpec,
    chunk: int,
    out: Path,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Chunk ``chunk`` of the source: :data:`.jobs.CHUNK_EVENTS` events from the fixed sampler, seeded by the chunk
    (the same whichever job makes it), into ``out`` (events, then ``result.json``). Every point is drawn and
    unweighted by the :class:`.sample.EventPlan` of the source's integration (``madnis.last_result``). Raises
    :class:`.sample.UnweightingStopped` when ``stop`` says so (nothing is written)."""
    seed = chunk_seed(spec.seed, spec.index, chunk)
    plan = EventPlan.of(madnis)
    points = WeightedPoints(madnis, source)
    first = plan.draw(madnis, top_up_size(CHUNK_EVENTS, plan.efficiency, settings.weighted_batch), seed)
    points.add(first, madnis.sampler_step, plan)
    events = unweight(madnis, points, CHUNK_EVENTS, source, settings, seed, log, stop=stop, plan=plan)
    out.mkdir(parents=True, exist_ok=True)
    write_events_file(out, events, event_records(source, events, np.random.default_rng(seed)), Accumulated.of(points))
    write_result(out, chunk_result(events))


def make_precision_chunk(
    madnis: MadNIS, source: ProcessSource, settings: RunSettings, spec: JobSpec, chunk: int, out: Path
) -> None:
    """Precision chunk ``chunk``: ``spec.precision_points`` weighted points for sigma alone (no events), drawn by
    :meth:`.sample.EventPlan.for_precision` with ``spec.precision_share``, seeded by the chunk (:data:`.source.PRECISION`);
    its result says so (``precision``), so the run's efficiency stays that of the points drawn for events."""
    seed = chunk_seed(spec.seed, spec.index, chunk, PRECISION)
    plan = EventPlan.for_precision(torch.tensor(spec.precision_share))
    points = WeightedPoints(madnis, source)
    draw_for_precision(madnis, points, plan, spec.precision_points, seed, settings.weighted_batch)
    events = unweight(madnis, points, 0, source, settings, seed, log, draw_more=False, plan=plan)
    out.mkdir(parents=True, exist_ok=True)
    write_events_file(out, events, None, Accumulated.of(points))
    write_result(out, chunk_result(events) | {"precision": True})


def generate(spec: JobSpec, source: ProcessSource, settings: RunSettings, job_dir: Path) -> dict[str, Any]:
    """The chunks ``spec.chunks`` and precision chunks ``spec.precision_chunks`` of the source, each into its own
    directory beside this job's."""
    madnis = MadNIS.load(spec.sampler, source.integrand, device=settings.training.device)
    madnis.last_result = integration_from_dict(spec.integration or {})  # channel probabilities of the run
    for chunk in spec.chunks:
        make_chunk(madnis, source, settings, spec, chunk, chunk_dir(job_dir.parent, chunk))
    for chunk in spec.precision_chunks:
        make_precision_chunk(madnis, source, settings, spec, chunk, precision_dir(job_dir.parent, chunk))
    return {"chunks": spec.chunks, "precision_chunks": spec.precision_chunks}


def ahead(
    spec: JobSpec, madnis: MadNIS, source: ProcessSource, settings: RunSettings, job_dir: Path, result: dict
) -> None:
    """After its result: while other training jobs still train (:func:`.jobs.ahead_open`), make the source's chunks
    1, 2, ... on this otherwise idle core, up to what its share can need (:func:`.jobs.share_bound`); the chunk in
    the making is dropped when the last of them ends. The parent takes those its share needs; the others'
    calls are counted, not their points."""
    if result["events_here"] or not spec.others:
        return
    integral = result["integration"]["integral"]
    have, chunk = result["candidates"], 1
    closed = lambda: not ahead_open(spec.others)  # noqa: E731
    while not closed() and have < share_bound(spec.max_events, integral, spec.others):
        try:
            make_chunk(madnis, source, settings, spec, chunk, chunk_dir(job_dir.parent, chunk), closed)
        except UnweightingStopped:
            log(f"  [{source.name}] chunk {chunk} ahead dropped: every training job is done")
            return
        log(f"  [{source.name}] chunk {chunk} made ahead while other jobs train")
        have, chunk = have + CHUNK_EVENTS, chunk + 1


def claim_idle_cores(spec: JobSpec, library: Any, log: Callable[[str], None]) -> Callable[[], None]:
    """A job's ``before_batch`` (:class:`~madnis_plugin.bridge_integrand.BridgeIntegrand`): at most every
    :data:`GROW_CHECK_SECONDS`, grow the bridge workers to :func:`.jobs.workers_now` (the cores the other jobs of its
    phase left), with a log line. The results do not change, only how fast the batches are evaluated. A worker that
    cannot start (no process left to fork) is logged once and the job goes on with the workers it has."""
    next_check = 0.0

    def claim() -> None:
        nonlocal next_check
        now = time.monotonic()
        if now < next_check:
            return
        next_check = now + GROW_CHECK_SECONDS
        wanted = workers_now(spec)
        if wanted <= library.workers:
            return
        try:
            library.grow(wanted)
        except (BridgeError, OSError) as error:  # no new process: the job goes on as it was, and stops asking
            next_check = math.inf
            log(f"  [{spec.name}] no more bridge workers ({error}): going on with {library.workers}")
            return
        log(f"  [{spec.name}] {wanted} bridge workers from now on: the other jobs left their cores")

    return claim


def run(job_dir: Path) -> None:
    """The job in ``job_dir``: as ``python -m``, or forked by the job server (:mod:`.job_server`), which imported
    this module long before: the job's clock starts here."""
    global STARTED
    from ..mg5.madevent_run import process_source

    STARTED = time.time()
    spec = JobSpec.read(job_dir)
    torch.set_num_threads(spec.threads)
    settings = settings_from_dict(spec.settings)
    log(
        f"MadNIS {spec.kind} job {job_dir}: {spec.name}, {spec.workers} bridge worker(s), {spec.threads} torch thread(s)"
    )
    source = process_source(Path(spec.pdir), MadnisSettings(workers=str(spec.workers)), spec.seed)
    library = source.integrand.library
    if spec.shared_cores > spec.workers:
        source.integrand.before_batch = claim_idle_cores(spec, library, log)
    if spec.channels is not None:
        source = channel_part(source, spec.channels, spec.name)
    try:
        if spec.kind == "train":
            result, madnis = train(spec, source, settings, job_dir)
            write_result(job_dir, {**result, "job_seconds": time.time() - STARTED})
            ahead(spec, madnis, source, settings, job_dir, result)
        else:
            write_result(job_dir, {**generate(spec, source, settings, job_dir), "job_seconds": time.time() - STARTED})
    finally:
        library.close()
    log(f"MadNIS {spec.kind} job done in {time.time() - STARTED:.1f} s")


if __name__ == "__main__":
    run(Path(sys.argv[1]).resolve())
