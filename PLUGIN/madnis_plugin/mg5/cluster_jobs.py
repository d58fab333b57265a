"""MadNIS jobs through the launch's own ``cmd.cluster`` (``run_mode`` 1: cluster, 2: multicore).

Why MG5aMC's object: it is what survey and refine submit to, so every cluster type MG5aMC knows (condor,
slurm, lsf, pbs, sge, htcaas, cluster plugins) and its multicore pool with ``nb_core`` run MadNIS's jobs
unchanged. A job is a small shell script in its own directory running ``python -m madnis_plugin.run.job`` (on a
multicore launch it first asks the launch's job server to fork the job, :mod:`..run.job_server`);
it always exits 0 (MG5aMC's multicore pool stops every job on a non-zero status), and it succeeded when it
left ``result.json``. Failed jobs are resubmitted once, as MadEvent does; a job failing twice stops the run
with one line naming its P-dir and its log. Nothing here imports ``madgraph``.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from madnis.subset import partition_groups

from ..lhe import BannerLike, LHEInit
from ..run import RunResult, RunSettings, saved_sampler_path
from ..run.job_server import client_script
from ..run.jobs import FINISHED, LOG, RESULT, JobSource, JobSpec, read_result
from ..run.parallel import run_in_jobs
from ..settings import MadnisSettings
from .launch_server import python_path
from .wall_clock import WallClock

logger = logging.getLogger("madevent.madnis")
MIN_GROUPS_PER_PART = 4  # channel groups a part of a split P-dir has at least (job_sources)
GROUP_ESTIMATE_POINTS = 100  # points per channel of the groups' cross-section estimates that balance the parts

SCRIPT = """#!/bin/bash
# MadNIS {kind} job of {name} (madnis-mg5): reads spec.json, writes result.json; always exits 0
cd {job_dir}
export PYTHONPATH={pythonpath}
export OMP_NUM_THREADS={threads}
export FC={fc}
{{ {server}{python} -m madnis_plugin.run.job {job_dir}; }} >> {log} 2>&1
touch {finished}
exit 0
"""


class JobFailed(RuntimeError):
    """A MadNIS job failed twice (one-line message naming the P-dir and the job's log)."""


def write_script(job_dir: Path, server: str | None = None) -> Path:
    """The job's script; with the address of a job server (:mod:`..run.job_server`), it asks the server to run
    the job and runs it itself only when no server takes it."""
    spec = JobSpec.read(job_dir)
    python, job, log = (shlex.quote(str(x)) for x in (sys.executable, job_dir, job_dir / LOG))
    client = f"{python} -S {shlex.quote(client_script())}"
    ask_server = f"{client} {shlex.quote(server)} {job} {log} || " if server else ""
    script = job_dir / "job.sh"
    script.write_text(
        SCRIPT.format(
            kind=spec.kind,
            name=spec.name,
            job_dir=job,
            pythonpath=shlex.quote(python_path()),
            threads=spec.threads,
            fc=shlex.quote(os.environ.get("FC", "gfortran")),
            python=python,
            server=ask_server,
            log=log,
            finished=shlex.quote(str(job_dir / FINISHED)),
        )
    )
    script.chmod(0o755)
    return script


def last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return lines[-1].strip() if lines else "no output"


class ClusterJobs:
    """``run_jobs`` of :func:`madnis_plugin.run.parallel.run_in_jobs` on ``cmd.cluster``."""

    def __init__(self, cmd: Any, server: str | None, clock: WallClock):
        self.cmd, self.server, self.clock = cmd, server, clock

    def __call__(self, job_dirs: list[Path], what: str) -> None:
        self.clock.mark("preparing jobs")  # bridge builds and channel-part estimates before the first jobs
        try:
            self._run(job_dirs, what)
        finally:
            self.clock.mark(f"{what} jobs")

    def _run(self, job_dirs: list[Path], what: str) -> None:
        pending = list(job_dirs)
        for attempt in (1, 2):
            for job_dir in pending:
                for left in (RESULT, FINISHED):
                    (job_dir / left).unlink(missing_ok=True)
                self.cmd.cluster.submit(str(write_script(job_dir, self.server)), argument=[], cwd=str(job_dir))
            self.cmd.cluster.wait(self.cmd.me_dir, self.progress(what, len(pending)))
            pending = [d for d in pending if read_result(d) is None]
            if not pending:
                return
            if attempt == 1:
                names = ", ".join(f"{JobSpec.read(d).name}/{d.name}" for d in pending)
                logger.warning("MadNIS: %d %s job(s) failed (%s): resubmitting once", len(pending), what, names)
        job_dir = pending[0]
        log = job_dir / LOG
        raise JobFailed(
            f"MadNIS {what} job of {JobSpec.read(job_dir).name} failed twice: {last_line(log)} (log: {log})"
        )

    def progress(self, what: str, n_jobs: int) -> Any:
        """The cluster's status callback: a progress line whenever the counts change."""
        last: list[tuple[int, int, int]] = []

        def update(idle: int, running: int, finished: int) -> None:
            if [(idle, running, finished)] != last:
                last[:] = [(idle, running, finished)]
                logger.info(
                    "MadNIS %s: %d job(s) waiting, %d running, %d done of %d", what, idle, running, finished, n_jobs
                )

        return update


def run_as_jobs(
    cmd: Any,
    settings: MadnisSettings,
    run_settings: RunSettings,
    banner: BannerLike,
    init: LHEInit,
    log: Callable[[str], None],
    server: str | None,
    clock: WallClock,
) -> RunResult:
    """The run in jobs on ``cmd.cluster``: ``nb_core`` cores in multicore mode (the jobs forked by the job server
    at ``server`` when there is one), one core per cluster job; ``clock`` takes the phases (:mod:`.wall_clock`)."""
    cores = launch_cores(cmd)
    pdirs = [Path(p) for p in cmd.get_Pdir()]
    split = not cmd.run_card["gridpack"]  # a gridpack carries one sampler per P-dir
    sources = job_sources(pdirs, cores, split, run_settings)
    try:
        return run_in_jobs(
            sources, run_settings, banner, init, ClusterJobs(cmd, server, clock), cores, settings.fixed_workers(), log
        )
    except JobFailed as error:
        raise cmd.InvalidCmd(str(error)) from None


def launch_cores(cmd: Any) -> int:
    """The cores this launch works on: ``nb_core`` in multicore mode, one otherwise (a cluster job takes one core
    each; a single-core launch runs in its process)."""
    return int(cmd.options.get("nb_core") or os.cpu_count() or 1) if cmd.cluster_mode == 2 else 1


def job_sources(pdirs: list[Path], cores: int, split: bool, settings: RunSettings) -> list[JobSource]:
    """One training job per P-dir; with fewer P-dirs than cores (and ``split``), each P-dir's channel groups are
    dealt into ceil(cores / P-dirs) parts of about equal estimated cross section (:func:`channel_groups`), trained
    in jobs of their own (:mod:`madnis.subset`), so that every
    core trains: a single P-dir's flow otherwise keeps one core while the other waits for matrix elements
    (MadEvent's survey runs one job per channel for the same reason). A part has at least
    :data:`MIN_GROUPS_PER_PART` channel groups: a few groups train in the minimum of steps, and a split then only
    adds a training and an efficiency check (measured, 2 cores, 10k events: ``p p > e+ e-``, 2 groups, 25 s split
    against 19 s whole; ``g g > w+ d u~ g``, 24 groups, 143 s and 148 s split, 114 s with checks of twice the
    events' sample, against 157 s and 182 s whole in earlier launches; ``g g > t t~ g``, 15 groups, 23.3 s split in
    three launches against 22.8-25.7 s whole, unweighting 14-15 % against 8 %). Not more parts than cores: W+2j dealt
    into 4 parts on 2 cores took 111 s and 133 s (efficiency 1.1-1.2 %) against 74 s and 89 s (1.5-1.75 %) in 2.
    A P-dir whose whole sampler is re-used (``madnis_reuse`` and its file present) stays whole."""
    if not split or len(pdirs) >= cores:
        return [JobSource(p) for p in pdirs]
    per_pdir = math.ceil(cores / len(pdirs))
    sources = []
    for pdir in pdirs:
        whole_saved = settings.reuse and saved_sampler_path(settings.output_dir, pdir.name).is_file()
        groups, sigma = ([], []) if whole_saved else channel_groups(pdir, settings.training.seed)
        parts = partition_groups(groups, min(per_pdir, len(groups) // MIN_GROUPS_PER_PART), sigma)
        if len(parts) <= 1:
            sources.append(JobSource(pdir))
        else:
            sources += [JobSource(pdir, channels, k, len(parts)) for k, channels in enumerate(parts)]
    return sources


def channel_groups(pdir: Path, seed: int) -> tuple[list[list[int]], list[float]]:
    """The P-dir's channel groups (symmetric channels share a flow) and a rough cross section of each: |f J alpha_i|
    averaged over :data:`GROUP_ESTIMATE_POINTS` points per channel uniform in MadEvent's mapping (no VEGAS grid),
    summed over the group (W+2j: 4800 points, 0.25 s). From its bridge library (built here if it is not yet: the
    jobs then find it built)."""
    import fortran_bridge

    from ..bridge_integrand import BridgeIntegrand

    with fortran_bridge.ProcessLibrary(pdir) as library:
        groups = BridgeIntegrand(library).groups()
        n_channels = library.info.n_channels
        channel = np.repeat(np.arange(n_channels), GROUP_ESTIMATE_POINTS)
        points = library.evaluate(channel, np.random.default_rng(seed).random((len(channel), library.info.ndim)))
        contribution = np.abs(points.value * points.alpha[np.arange(len(channel)), channel])
        per_channel = np.bincount(channel, weights=contribution, minlength=n_channels) / GROUP_ESTIMATE_POINTS
        return groups, [float(per_channel[g].sum()) for g in groups]
