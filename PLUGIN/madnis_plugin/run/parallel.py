"""A run as jobs: every source trains in a job, its events come from seeded chunk jobs, merged into one LHE.

Why: MG5aMC's ``run_mode`` 1 and 2 give a launch several cores or cluster slots; :func:`run_in_jobs` writes
the jobs' specs (:mod:`.jobs`) and hands them to ``run_jobs`` (MG5aMC's cluster object, see
``mg5/cluster_jobs.py``), which returns once every job left its result. A source is a P-dir or a part of its
channels (:class:`.jobs.JobSource`, :mod:`madnis.subset`: the parts' integrals and events add up to the P-dir's).
Then, as :func:`.run_processes`:
``nevents`` shared by the integrated cross sections, each share taken from its training job's candidate events
and what they lack from chunks of :data:`.jobs.CHUNK_EVENTS` events (those the training jobs made ahead, the
others in generation jobs, :func:`.jobs.generation_jobs`); where sigma's error then misses the run's
``relative_precision``, precision chunks of weighted points for sigma alone (:func:`.events.precision_shortfall`: known only
once the event chunks are in, so a phase of its own); merged in order, sigma pooled over every
weighted point from the fixed samplers, one LHE with one ``<init>`` line per source, and the trained samplers
saved only once the LHE is written.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..lhe import BannerLike, LHEInit
from .events import precision_shortfall, share_events, write_events
from .jobs import (
    CHUNK_EVENTS,
    POINTS,
    SAMPLER,
    Accumulated,
    Chunk,
    JobSource,
    JobSpec,
    accumulated,
    chunk_count,
    chunk_dir,
    core_share,
    generation_jobs,
    integration_from_dict,
    merge_chunks,
    precision_chunks,
    precision_dir,
    read_result,
    settings_to_dict,
)
from .orchestrate import RunResult, SourceResult, log_summary, pooled_cross_section
from .sample import channel_spreads, describe_sigma
from .source import ProcessSource, RunSettings, check_run, saved_sampler_path
from .train import TrainedSampler

JobRunner = Callable[[list[Path], str], None]  # runs the jobs of these directories ("training", ...)


def job_specs(specs: list[tuple[Path, JobSpec]], cores: int, workers: int | None) -> list[Path]:
    """Write the specs of one phase's jobs with each job's share of ``cores`` and the other jobs of the phase
    (``workers`` fixes the bridge workers; otherwise a job takes the cores its neighbours leave,
    :func:`.jobs.workers_now`)."""
    auto_workers, threads = core_share(cores, len(specs))
    for job_dir, spec in specs:
        spec.workers, spec.threads = workers or auto_workers, threads
        spec.shared_cores = cores if workers is None else 0
        spec.others = [str(other) for other, _ in specs if other != job_dir]
        spec.write(job_dir)
    return [job_dir for job_dir, _ in specs]


def run_in_jobs(
    sources: Sequence[JobSource],
    settings: RunSettings,
    banner: BannerLike,
    init: LHEInit,
    run_jobs: JobRunner,
    cores: int,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train every source (a P-dir or a part of its channels) and generate ``settings.nevents`` events in jobs;
    write the LHE; return the run."""
    start = time.time()
    check_run(settings)
    seed = settings.training.seed
    root = settings.output_dir / "jobs" / settings.run_name
    shutil.rmtree(root, ignore_errors=True)
    log(f"MadNIS: {len(sources)} training job(s) on {cores} core(s)")
    share = math.ceil(settings.nevents / len(sources))  # one source: its events (several: jobs.projected_share)
    alone = len(sources) == 1  # the share is exact: the training job may generate the events (EVENTS_IN_TRAINING)
    # candidates: shares are known only after every integration; each job bounds its own from the integrals or
    # training estimates the others wrote so far (jobs.share_bound)
    source_settings = [settings_to_dict(s.settings(settings)) for s in sources]
    train_dirs = [root / s.name / "train" for s in sources]
    specs = [
        JobSpec(
            "train",
            str(s.pdir),
            i,
            seed,
            source_settings[i],
            n_events=share,
            max_events=settings.nevents,
            events_here=alone,
            channels=s.channels,
            label=s.name,
        )
        for i, s in enumerate(sources)
    ]
    job_specs(list(zip(train_dirs, specs)), cores, workers)
    run_jobs(train_dirs, "training")
    trained = [read_result(d) or {} for d in train_dirs]
    integrations = [integration_from_dict(t["integration"]) for t in trained]
    for s, t, integration in zip(sources, trained, integrations):
        for line in t.get("summary", []):
            log(line)
        log(f"  [{s.name}] integration: {describe_sigma(integration)}")
    shares = share_events(settings.nevents, [r.integral for r in integrations])
    candidates = [Chunk.read(d) for d in train_dirs]
    taken = [min(n, len(c)) for n, c in zip(shares, candidates)]
    chunks = [list(range(1, chunk_count(n - m) + 1)) for n, m in zip(shares, taken)]
    missing = []
    for i, (s, t, n, m) in enumerate(zip(sources, trained, shares, taken)):
        todo = [c for c in chunks[i] if read_result(chunk_dir(root / s.name, c)) is None]
        ahead = len(chunks[i]) - len(todo)
        source_of_events = "generated by the training job" if t["events_here"] else "of the training job's points"
        made_ahead = f" ({ahead} made ahead by the training job)" if ahead else ""
        log(f"  [{s.name}] {n} events: {m} {source_of_events}, {n - m} in {len(chunks[i])} chunk(s){made_ahead}")
        if todo:
            missing.append((i, todo, 1.0 / max(t["efficiency"], 1e-6)))

    def generation_specs(jobs: list[tuple[int, list[int]]], precision: list[tuple[int, int]] | None) -> list[Path]:
        specs = []
        for i, todo in jobs:
            spec = JobSpec("generate", str(sources[i].pdir), i, seed, source_settings[i])
            if precision is None:
                spec.chunks, name = todo, f"generate_{todo[0]:03d}"
            else:  # a directory apart from the chunks' own
                spec.precision_chunks, spec.precision_points = todo, precision[i][1]
                spec.precision_share = channel_spreads(final[i]).tolist()
                name = f"generate_precision_{todo[0]:03d}"
            spec.channels, spec.label = sources[i].channels, sources[i].name
            spec.sampler, spec.integration = str(train_dirs[i] / SAMPLER), trained[i]["integration"]
            specs.append((root / sources[i].name / name, spec))
        return job_specs(specs, cores, workers)

    event_jobs = generation_jobs(missing, cores)
    log(f"MadNIS: {settings.nevents} events shared {shares} over the P-dirs, {len(event_jobs)} generation job(s)")
    if event_jobs:
        run_jobs(generation_specs(event_jobs, None), "event generation")
    pooled = [
        accumulated(d, [chunk_dir(root / s.name, c) for c in numbers])
        for s, d, numbers in zip(sources, train_dirs, chunks)
    ]
    groups = [[c.group for c in r.channels] for r in integrations]
    final = [p.final_result(g) for p, g in zip(pooled, groups)]
    so_far = [p.result(g) for p, g in zip(pooled, groups)]
    precision = [precision_chunks(x) for x in precision_shortfall(so_far, final, settings.relative_precision, log)]
    precision_jobs = generation_jobs([(i, list(range(1, k + 1)), n) for i, (k, n) in enumerate(precision) if k], cores)
    if precision_jobs:
        run_jobs(generation_specs(precision_jobs, precision), "precision")

    results, parts = [], []
    for s, train_dir, t, integration, numbers, n, candidate, m, n_precision in zip(
        sources, train_dirs, trained, integrations, chunks, shares, candidates, taken, precision
    ):
        with np.load(train_dir / POINTS) as points:
            first, sample_weights = Accumulated.from_arrays(points), points["weights"]
        generated = [Chunk.read(chunk_dir(root / s.name, c)) for c in numbers]
        if generated:  # the last chunk is cut: its events of lowest priority
            generated[-1] = generated[-1].first(n - m - CHUNK_EVENTS * (len(generated) - 1))
        for_precision = [Chunk.read(precision_dir(root / s.name, c)) for c in range(1, n_precision[0] + 1)]
        events, records = merge_chunks(
            integration, first, sample_weights, [candidate.first(m), *generated, *for_precision]
        )
        # the matrix-element calls of every record computed: each event in a job's file, also the candidates not taken
        record_calls = (len(candidate) + CHUNK_EVENTS * len(generated)) * t["record_evaluations"]
        source = merged_source(s, t)
        sampler = TrainedSampler(
            None,  # type: ignore[arg-type]  # the sampler lives in its job's checkpoint
            t["losses"],
            t["running_integrals"],
            t["seconds"],
            t["calls"],
            None if t["reused_from"] is None else Path(t["reused_from"]),
            calls_inside=t["calls_inside"],
        )
        spare, spare_inside = spare_calls(root / s.name, len(numbers), t["record_evaluations"])
        results.append(SourceResult(source, sampler, integration, events, n, record_calls, spare, spare_inside))
        parts.append((source, events, records))
        log(f"  [{s.name}] {results[-1].calls_line()}")
    sigma, error = pooled_cross_section(results)
    rng = np.random.default_rng(seed)
    lhe_path = write_events(settings.output_dir / settings.events_file, parts, sigma, banner, init, rng, cores)
    if settings.save_models:  # only now: a failed or interrupted run keeps the samplers saved before
        for s, train_dir, t in zip(sources, train_dirs, trained):
            if t["reused_from"] is None:
                target = saved_sampler_path(settings.output_dir, s.name)
                shutil.copyfile(train_dir / SAMPLER, target.with_name(f".{target.name}.tmp"))
                os.replace(target.with_name(f".{target.name}.tmp"), target)
    run = RunResult(sigma, error, settings.nevents, lhe_path, results, time.time() - start)
    log_summary(run, settings, log)
    return run


def spare_calls(source_dir: Path, used: int, record_evaluations: int) -> tuple[int, int]:
    """Matrix-element calls of the chunks a training job made ahead beyond the ``used`` ones its share took
    (weighted points and records), and those of them inside the cuts: spent, counted, but not in the events or sigma
    (which would then depend on how long the other jobs trained)."""
    calls, inside, chunk = 0, 0, used + 1
    while (result := read_result(chunk_dir(source_dir, chunk))) is not None:
        records = CHUNK_EVENTS * record_evaluations
        calls, inside = calls + result["weighted_points"] + records, inside + result["weighted_inside"] + records
        chunk += 1
    return calls, inside


def merged_source(source: JobSource, trained: dict) -> ProcessSource:
    """The P-dir or part as reports see it (name, LPRUP, channel names); its integrand lived in the jobs."""
    return ProcessSource(
        name=source.name,
        integrand=None,  # type: ignore[arg-type]
        event_records=None,  # type: ignore[arg-type]
        lprup=trained["lprup"],
        channel_names=trained["channel_names"],
        record_evaluations=trained["record_evaluations"],
        process=source.pdir.name if source.parts > 1 else "",
    )
