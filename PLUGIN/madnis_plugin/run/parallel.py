"""A run as jobs: every P-dir trains in a job, its events come from seeded chunk jobs, merged into one LHE.

Why: MG5aMC's ``run_mode`` 1 and 2 give a launch several cores or cluster slots; :func:`run_in_jobs` writes
the jobs' specs (:mod:`.jobs`) and hands them to ``run_jobs`` (MG5aMC's cluster object, see
``mg5/cluster_jobs.py``), which returns once every job left its result. Then, as :func:`.run_processes`:
``nevents`` shared by the integrated cross sections, each share cut into chunks (:func:`.jobs.chunk_sizes`),
the chunks merged in order, sigma pooled over every weighted point from the fixed samplers, one LHE with one
``<init>`` line per P-dir, and the trained samplers saved only once the LHE is written.
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
from .events import share_events, write_events
from .jobs import (
    POINTS,
    SAMPLER,
    Accumulated,
    Chunk,
    JobSpec,
    chunk_sizes,
    core_share,
    integration_from_dict,
    merge_chunks,
    read_result,
    settings_to_dict,
)
from .orchestrate import RunResult, SourceResult, log_summary
from .sample import describe_sigma
from .source import ProcessSource, RunSettings, check_run, saved_sampler_path
from .train import TrainedSampler

JobRunner = Callable[[list[Path], str], None]  # runs the jobs of these directories ("training", ...)


def job_specs(specs: list[tuple[Path, JobSpec]], cores: int, workers: int | None) -> list[Path]:
    """Write the specs with each job's share of ``cores`` (``workers`` fixes the bridge workers)."""
    auto_workers, threads = core_share(cores, len(specs))
    for job_dir, spec in specs:
        spec.workers, spec.threads = workers or auto_workers, threads
        spec.write(job_dir)
    return [job_dir for job_dir, _ in specs]


def run_in_jobs(
    pdirs: Sequence[Path],
    settings: RunSettings,
    banner: BannerLike,
    init: LHEInit,
    run_jobs: JobRunner,
    cores: int,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train every P-dir and generate ``settings.nevents`` events in jobs; write the LHE; return the run."""
    start = time.time()
    check_run(settings)
    seed = settings.training.seed
    root = settings.output_dir / "jobs" / settings.run_name
    shutil.rmtree(root, ignore_errors=True)
    common = settings_to_dict(settings)
    log(f"MadNIS: {len(pdirs)} training job(s) on {cores} core(s)")
    share = math.ceil(settings.nevents / len(pdirs))  # what steps = auto projects to: no sigma is known yet
    train_dirs = job_specs(
        [
            (root / p.name / "train", JobSpec("train", str(p), i, seed, common, n_events=share))
            for i, p in enumerate(pdirs)
        ],
        cores,
        workers,
    )
    run_jobs(train_dirs, "training")
    trained = [read_result(d) or {} for d in train_dirs]
    integrations = [integration_from_dict(t["integration"]) for t in trained]
    for p, t, integration in zip(pdirs, trained, integrations):
        for line in t.get("summary", []):
            log(line)
        log(f"  [{p.name}] integration: {describe_sigma(integration)}")
    shares = share_events(settings.nevents, [r.integral for r in integrations])
    chunks: list[list[Path]] = []
    specs = []
    for i, (p, t, n) in enumerate(zip(pdirs, trained, shares)):
        dirs = [root / p.name / f"chunk_{c:03d}" for c in range(len(chunk_sizes(n)))]
        chunks.append(dirs)
        for c, (job_dir, size) in enumerate(zip(dirs, chunk_sizes(n))):
            spec = JobSpec("generate", str(p), i, seed, common, chunk=c, n_events=size)
            spec.sampler, spec.integration, spec.efficiency = (
                str(train_dirs[i] / SAMPLER),
                t["integration"],
                t["efficiency"],
            )
            specs.append((job_dir, spec))
    log(f"MadNIS: {settings.nevents} events shared {shares} over the P-dirs, {len(specs)} generation job(s)")
    run_jobs(job_specs(specs, cores, workers), "event generation")

    results, parts = [], []
    for p, train_dir, t, integration, dirs, n in zip(pdirs, train_dirs, trained, integrations, chunks, shares):
        with np.load(train_dir / POINTS) as points:
            first, sample_weights = Accumulated.from_arrays(points), points["weights"]
        events, records = merge_chunks(integration, first, sample_weights, [Chunk.read(d) for d in dirs])
        source = merged_source(p, t)
        sampler = TrainedSampler(
            None,  # type: ignore[arg-type]  # the sampler lives in its job's checkpoint
            t["losses"],
            t["running_integrals"],
            t["seconds"],
            t["calls"],
            None if t["reused_from"] is None else Path(t["reused_from"]),
        )
        results.append(SourceResult(source, sampler, integration, events, n, event_record_calls=n))
        parts.append((source, events, records))
        log(f"  [{p.name}] {len(dirs)} chunk(s) merged; {results[-1].calls_line()}")
    sigma = sum(r.result.integral for r in results)
    error = math.sqrt(sum(r.result.error**2 for r in results))
    rng = np.random.default_rng(seed)
    lhe_path = write_events(settings.output_dir / settings.events_file, parts, sigma, banner, init, rng)
    if settings.save_models:  # only now: a failed or interrupted run keeps the samplers saved before
        for p, train_dir, t in zip(pdirs, train_dirs, trained):
            if t["reused_from"] is None:
                target = saved_sampler_path(settings.output_dir, p.name)
                shutil.copyfile(train_dir / SAMPLER, target.with_name(f".{target.name}.tmp"))
                os.replace(target.with_name(f".{target.name}.tmp"), target)
    run = RunResult(sigma, error, settings.nevents, lhe_path, results, time.time() - start)
    log_summary(run, settings, log)
    return run


def merged_source(pdir: Path, trained: dict) -> ProcessSource:
    """The P-dir as reports see it (name, LPRUP, channel names); its integrand lived in the jobs."""
    return ProcessSource(
        name=pdir.name,
        integrand=None,  # type: ignore[arg-type]
        event_records=None,  # type: ignore[arg-type]
        lprup=trained["lprup"],
        channel_names=trained["channel_names"],
    )
