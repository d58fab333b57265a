"""One MadNIS run over several processes, as a pipeline of steps with explicit inputs and results.

Why: the built-in demo and the MG5aMC plugin (one source per MadEvent P-dir, through the Fortran bridge)
run exactly the same sequence, so it lives here, free of MG5aMC imports. A process source is an
:class:`~madnis.integrand.Integrand` plus a function turning accepted points into :class:`~..lhe.EventRecords`.

:func:`run_processes` checks the run (:func:`.source.check_run`), then per source: train or load
(:mod:`.train`), integrate and unweight (:mod:`.sample`: the integration's points are the first weighted
sample, every point drawn from the fixed sampler enters the quoted sigma), build the event records and write
one LHE (:mod:`.events`); it prints MadEvent's results summary and the matrix-element calls of every step.
``nevents`` is split over the sources by their integrated cross sections. Integration and sampling are
seeded by the run's seed (``training.seed``) and the source index alone, so a re-used sampler with a new
seed gives independent events and with the training run's seed repeats that run's events. Trained samplers
are saved (atomically) only once the event file is written, so a failed or interrupted run never replaces a
good saved sampler.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from madnis import IntegrationResult

from ..lhe import BannerLike, LHEInit
from .events import (
    event_records,
    integration_points,
    precision_shortfall,
    share_events,
    training_share,
    write_events,
)
from .sample import (
    EventPlan,
    Unweighted,
    WeightedPoints,
    channel_spreads,
    describe_sigma,
    draw_for_precision,
    integrate,
    unweight,
)
from .source import (
    INTEGRATION,
    PRECISION,
    SAMPLING,
    ProcessSource,
    RunSettings,
    check_run,
    saved_sampler_path,
    stream_seed,
)
from .train import TrainedSampler, saved_sampler, train_or_load


@dataclass
class SourceResult:
    """Everything a report needs about one source, assembled from its steps' results."""

    source: ProcessSource
    trained: TrainedSampler
    integration: IntegrationResult  # the final integration alone
    events: Unweighted
    n_events: int
    event_record_calls: int  # the event records' matrix-element evaluations (ProcessSource.record_evaluations each)
    spare_calls: int = 0  # chunks made ahead that the share did not need (points and records: not in sigma)
    spare_inside: int = 0  # of those, the points inside the cuts and the records

    @property
    def result(self) -> IntegrationResult:
        """The quoted cross section: pooled over every weighted point drawn from the trained sampler."""
        return self.events.cross_section

    @property
    def training_calls(self) -> int:
        return self.trained.calls

    @property
    def weighted_points(self) -> int:
        """Integration and unweighting points: all of them in the quoted cross section."""
        return self.events.weighted_points

    @property
    def n_calls(self) -> int:
        """Matrix-element calls of this source in this run: training, weighted points, event records, spare chunks."""
        return self.training_calls + self.weighted_points + self.event_record_calls + self.spare_calls

    @property
    def n_inside(self) -> int:
        """Of :attr:`n_calls`, the points inside the cuts (weight != 0), where a matrix element is evaluated, and the
        event records: what stock MadEvent counts of its points (``results.dat``, ``kevent`` in ``dsample.f``); a
        point outside the cuts costs MadEvent its phase space alone, MadNIS also its flow."""
        return self.trained.calls_inside + self.events.weighted_inside + self.event_record_calls + self.spare_inside

    def calls_line(self) -> str:
        return (
            f"{self.n_calls} matrix-element calls: {self.training_calls} training + {self.weighted_points} weighted "
            f"(integration and unweighting, all in sigma) + {self.event_record_calls} for the event records"
            + (f" + {self.spare_calls} in chunks made ahead and not needed" if self.spare_calls else "")
            + f"; {self.n_inside} of them inside the cuts"
        )


def channel_names(result: SourceResult) -> list[str]:
    """Display names of a source's channels: its own, else the channel numbers."""
    return result.source.channel_names or [str(c.channel) for c in result.result.channels]


@dataclass
class RunResult:
    cross_section: float
    error: float
    nevents: int
    lhe_path: Path | None
    sources: list[SourceResult]
    seconds: float

    @property
    def efficiency(self) -> float:
        """Unweighting efficiency over all sources, each source's of its points drawn for events (the points for sigma
        alone, ``madnis_precision``, unweight nothing), weighted by all its weighted points."""
        drawn = sum(s.weighted_points for s in self.sources)
        return sum(s.events.efficiency * s.weighted_points for s in self.sources) / drawn if drawn else 0.0

    @property
    def n_calls(self) -> int:
        """Matrix-element calls of the whole run (every source, every step)."""
        return sum(s.n_calls for s in self.sources)

    @property
    def n_inside(self) -> int:
        """Of :attr:`n_calls`, those inside the cuts (:attr:`SourceResult.n_inside`)."""
        return sum(s.n_inside for s in self.sources)

    @property
    def efficiency_inside(self) -> float:
        """:attr:`efficiency` per weighted point inside the cuts (the points outside unweight to nothing): stock
        MadEvent's basis, whose efficiency is its unweighted events / the points of ``results.dat``."""
        inside = sum(s.events.weighted_inside for s in self.sources)
        return sum(s.events.efficiency * s.weighted_points for s in self.sources) / inside if inside else 0.0

    @property
    def tail_error(self) -> float:
        """The weight-tail part of ``error`` (:mod:`madnis.tails`), sources in quadrature."""
        return math.sqrt(sum(s.result.tail_error**2 for s in self.sources))

    @property
    def variance_error(self) -> float:
        """``error`` without its weight-tail part: the points' variance alone, as MadEvent quotes its error."""
        return math.sqrt(max(self.error**2 - self.tail_error**2, 0.0))


def pooled_cross_section(results: Sequence[SourceResult]) -> tuple[float, float]:
    """The run's sigma and its error: the sources' summed, errors in quadrature."""
    return sum(r.result.integral for r in results), math.sqrt(sum(r.result.error**2 for r in results))


def madevent_summary(run_name: str, tag: str, cross_section: float, error: float, nevents: int) -> str:
    """MadEvent's end-of-run block."""
    return (
        f"  === Results Summary for run: {run_name} tag: {tag} ===\n\n"
        f"     Cross-section :   {cross_section:.4g} +- {error:.3g} pb\n"
        f"     Nb of events :  {nevents}\n"
    )


def log_summary(run: RunResult, settings: RunSettings, log: Callable[[str], None]) -> None:
    """The end of a run's log, whichever path ran it: MadEvent's results block, then every matrix-element call."""
    log("")
    log(madevent_summary(settings.run_name, settings.tag, run.cross_section, run.error, run.nevents))
    log(f"MadNIS: {run.n_calls} matrix-element calls in all, unweighting efficiency {100 * run.efficiency:.2f}%")
    log(
        f"MadNIS: {run.n_inside} of them inside the cuts (the points stock MadEvent counts in results.dat), "
        f"unweighting efficiency {100 * run.efficiency_inside:.2f}% per weighted point inside the cuts"
    )
    log(
        f"MadNIS: the error {run.error:.3g} pb holds a weight-tail part of {run.tail_error:.3g} pb in quadrature "
        f"(the points' variance alone, as MadEvent quotes it: {run.variance_error:.3g} pb)"
    )


def precise(
    sources: Sequence[ProcessSource],
    trained: Sequence[TrainedSampler],
    points: Sequence[WeightedPoints],
    unweighted: Sequence[Unweighted],
    settings: RunSettings,
    seed: int,
    log: Callable[[str], None],
) -> list[Unweighted]:
    """The sources' events with sigma at the run's ``relative_precision``: the weighted points that
    :func:`.events.precision_shortfall` asks beyond all drawn so far, each source's with the channel allocation of least
    variance (:meth:`.sample.EventPlan.for_precision`, seeded by the precision stream), pooled into its sigma; events
    and their efficiency unchanged."""
    final = [w.cross_section.final.result(w.group_of_channel) for w in points]
    extra = precision_shortfall([u.cross_section for u in unweighted], final, settings.relative_precision, log)
    out = []
    for index, (source, t, weighted, events, n) in enumerate(zip(sources, trained, points, unweighted, extra)):
        if n > 0:
            plan = EventPlan.for_precision(channel_spreads(final[index]))
            batch = settings.weighted_batch
            draw_for_precision(t.madnis, weighted, plan, n, stream_seed(seed, index, PRECISION), batch)
            sigma = weighted.cross_section.result(weighted.group_of_channel)
            events = replace(
                events, cross_section=sigma, weighted_points=len(weighted), weighted_inside=weighted.n_inside
            )
            log(f"  [{source.name}] {n} more weighted points for sigma (madnis_precision): {describe_sigma(sigma)}")
        out.append(events)
    return out


def run_processes(
    sources: Sequence[ProcessSource],
    settings: RunSettings,
    banner: BannerLike,
    init: LHEInit,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train (or re-use), integrate, generate ``settings.nevents`` unweighted events and write the LHE.

    ``init`` gives the beams and PDF ids; its process list is replaced by one line per source. ``banner`` is a
    :class:`~..lhe.Banner` or anything with ``text(n_events, integrated_weight)`` (MadEvent's own banner).
    Returns the cross section, the LHE path and per-source results for plots and reports.
    """
    start = time.time()
    check_run(settings)
    seed = settings.training.seed
    saved = [saved_sampler(s, settings, log) for s in sources]  # an unusable file fails before any training
    trained: list[TrainedSampler] = []
    for i, (s, m) in enumerate(zip(sources, saved)):
        n_events = training_share(settings.nevents, len(sources), [t.running_integral for t in trained])
        trained.append(train_or_load(i, s, m, settings, log, n_events))
    sigma = [t.running_integral for t in trained]
    configured = [settings.integration_points] * len(sources)
    integrations = [
        integrate(
            t.madnis, s, settings, stream_seed(seed, i, INTEGRATION), log, integration_points(configured, sigma, i)
        )
        for i, (s, t) in enumerate(zip(sources, trained))
    ]
    shares = share_events(settings.nevents, [result.integral for result, _ in integrations])
    rng = np.random.default_rng(seed)
    results, parts = [], []
    unweighted = [
        unweight(t.madnis, points, n_events, source, settings, stream_seed(seed, index, SAMPLING), log)
        for index, (source, t, (_, points), n_events) in enumerate(zip(sources, trained, integrations, shares))
    ]
    weighted = [points for _, points in integrations]
    unweighted = precise(sources, trained, weighted, unweighted, settings, seed, log)
    for source, t, (integration, _), n_events, events in zip(sources, trained, integrations, shares, unweighted):
        records = event_records(source, events, rng)
        record_calls = n_events * source.record_evaluations
        results.append(SourceResult(source, t, integration, events, n_events, event_record_calls=record_calls))
        parts.append((source, events, records))
        log(f"  [{source.name}] {results[-1].calls_line()}")
    sigma, error = pooled_cross_section(results)
    lhe_path = write_events(settings.output_dir / settings.events_file, parts, sigma, banner, init, rng)
    if settings.save_models:  # only now: a failed or interrupted run keeps the samplers saved before
        for source, t in zip(sources, trained):
            if t.reused_from is None:
                t.madnis.save(saved_sampler_path(settings.output_dir, source.name))
    run = RunResult(sigma, error, settings.nevents, lhe_path, results, time.time() - start)
    log_summary(run, settings, log)
    return run
