"""Steps 4 and 5, records and write: events shared over the sources, their LHE records, one atomic LHE file.

Why apart: the split of ``nevents`` must add up exactly, the records cost one more matrix-element evaluation
per event (counted by the caller), and the file must appear only complete (``write_lhe`` is atomic).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from madnis import IntegrationResult
from madnis.sampler import channel_probabilities

from ..lhe import BannerLike, EventRecords, LHEInit, LHEProcessInfo, write_lhe
from .sample import Unweighted, channel_spreads
from .source import ProcessSource


def share_events(nevents: int, cross_sections: Sequence[float]) -> list[int]:
    """Split ``nevents`` proportionally to the cross sections (largest remainder: sums to nevents exactly)."""
    sigma = np.clip(np.asarray(cross_sections, dtype=np.float64), 0, None)
    if sigma.sum() <= 0:
        raise ValueError("all processes have zero cross section: no events can be generated")
    exact = nevents * sigma / sigma.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts))[: nevents - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def training_share(nevents: int, n_sources: int, known: Sequence[float]) -> Callable[[float], float]:
    """A training source's share of ``nevents`` as a function of its running integral, for ``steps = auto``.

    Before training ends the final split (:func:`share_events`) is unknown, so the share uses the running
    cross sections known at that point: ``known`` (the sources trained before) and the training source's own,
    with each source not yet trained counted at the mean of those; the first source thus gets
    ``nevents / n_sources`` and the last its fraction of the summed running cross sections.
    """

    def share(integral: float) -> float:
        sigma = [abs(s) for s in known] + [abs(integral)]
        total = sum(sigma) * n_sources / len(sigma)
        return nevents * sigma[-1] / total if total > 0 and math.isfinite(total) else nevents / n_sources

    return share


MIN_INTEGRATION_POINTS = 1000  # a source's final integration draws at least these (or its configured points)


def integration_points(configured: Sequence[int], cross_sections: Sequence[float | None], own: int) -> int:
    """Points of source ``own``'s final integration: the sources' ``configured`` points re-divided by cross
    section, at the same expected error of the summed cross section.

    With n_j points per source and the same relative spread r per point in each, the summed sigma has variance
    r^2 sigma^2 sum_j s_j^2 / n_j (s_j: source j's share of sigma); at fixed variance the fewest points are
    n_j proportional to s_j, so n_i = s_i / sum_j (s_j^2 / n_j): the configured points for one source or equal
    shares, more for a large share, fewer for a small one (at least :data:`MIN_INTEGRATION_POINTS`). Why:
    ``p p > t t~ j``'s three P-dirs drew 100k points each, the ``q q~`` one for 3.7 % of sigma and 372 events
    (4k points): 300k points where 172k give the same expected error. Sources whose cross section is not known
    yet (None: still training elsewhere) count at the mean of the known, as in :func:`training_share`."""
    known = [abs(s) for s in cross_sections if s is not None and math.isfinite(s)]
    mean = sum(known) / len(known) if known else 1.0
    sigma = [mean if s is None or not math.isfinite(s) else abs(s) for s in cross_sections]
    total = sum(sigma)
    if total <= 0:
        return configured[own]
    shares = [s / total for s in sigma]
    inverse = sum(s * s / n for s, n in zip(shares, configured))
    return max(min(configured[own], MIN_INTEGRATION_POINTS), math.ceil(shares[own] / inverse))


def precision_points(
    errors: Sequence[float], points: Sequence[int], target: float, new_spread: Sequence[float] | None = None
) -> list[int]:
    """Weighted points each source draws beyond its ``points`` so that the summed cross section's error reaches
    ``target`` (absolute, pb; the run's ``relative_precision`` x sigma).

    Source j quoted ``errors[j]`` on ``points[j]`` points: a spread per point s_j = errors[j] sqrt(points[j]); with
    N_j such points its error is s_j / sqrt(N_j), the sum's sqrt(sum_j s_j^2 / N_j). Where that misses ``target``,
    the fewest points in all (one cost per point assumed) give N_j proportional to s_j, except that no source has
    fewer than it has: those keep their error and the rest share what their variance leaves (water-filling); a
    source with zero spread draws nothing. The new points of source j have the spread ``new_spread[j]`` (default
    s_j: the precision points' allocation of least variance spreads less, :func:`new_spread`) and pool with
    the old by their numbers (:class:`madnis.integration.StagePool`): x new points give the variance
    (n^2 e^2 + x s_new^2) / (n + x)^2, solved for the source's share of the target. Why: the points its events
    need set a run's error otherwise, and a sampler that unweights better needs fewer of them, so its error grows
    (``g g > w+ d u~ g``, 100k events: 0.128 pb against stock MadEvent's 0.092 at 3.5 % against 2.0 %)."""
    spread = [e * math.sqrt(n) if n > 0 and math.isfinite(e) else 0.0 for e, n in zip(errors, points)]
    if target <= 0 or sum(s * s / n for s, n in zip(spread, points) if n > 0) <= target * target:
        return [0] * len(spread)
    fixed = [s <= 0 for s in spread]
    while True:
        left = target * target - sum(s * s / n for s, n, f in zip(spread, points, fixed) if f and n > 0)
        free = sum(s for s, f in zip(spread, fixed) if not f)
        scale = free / left if left > 0 else math.inf  # N_j = scale s_j for the free sources
        newly = [j for j, (s, n, f) in enumerate(zip(spread, points, fixed)) if not f and scale * s <= n]
        if not newly:
            break
        for j in newly:
            fixed[j] = True
    new_spread = spread if new_spread is None else new_spread
    return [
        0 if f else _points_for(n, e, s_new, s / scale)
        for e, n, s, s_new, f in zip(errors, points, spread, new_spread, fixed)
    ]


def precision_shortfall(
    so_far: Sequence[IntegrationResult],
    final: Sequence[IntegrationResult],
    relative_precision: float,
    log: Callable[[str], None],
) -> list[int]:
    """The weighted points each source draws for sigma alone (:func:`precision_points`) beyond the points ``so_far``
    (each source's sigma pooled over every point drawn for it) at the run's ``relative_precision``, with their
    expected spread (:func:`new_spread` of its ``final`` sampler's points: an earlier sampler's, a check's that
    resumed training or the training batches', spread more); a line says what the target asks.

    The target is the quoted error's, which holds the weight-tail part (:mod:`madnis.tails`) in quadrature; that part
    shrinks more slowly than the points' variance, so the points aim at what the target leaves the variance with
    the tail part as it is (at least half the target): ``g g > w+ d u~ g`` at 100k events, aiming the whole error
    at 0.0869 pb, brought the variance part to 0.087 and quoted 0.0926 with a tail part of 0.0317."""
    target = relative_precision * abs(sum(r.integral for r in so_far))
    tails = sum(r.tail_error**2 for r in so_far)
    variance_target = math.sqrt(max(target**2 - tails, target**2 / 4))
    variance_errors = [math.sqrt(max(r.error**2 - r.tail_error**2, 0.0)) for r in so_far]
    counts = [r.n_points for r in so_far]
    extra = precision_points(variance_errors, counts, variance_target, [new_spread(r) for r in final])
    if target > 0:
        error = math.sqrt(sum(r.error**2 for r in so_far))
        more = f"{sum(extra)} more weighted points for sigma alone" if sum(extra) else "no more points"
        log(
            f"MadNIS: sigma's error {error:.3g} pb from the events' points, target {target:.3g} pb "
            f"({relative_precision:.2g} relative, madnis_precision): {more}"
        )
    return extra


def _points_for(n: int, error: float, new_spread: float, variance: float) -> int:
    """x >= 0 with (n^2 error^2 + x new_spread^2) / (n + x)^2 = ``variance`` (< error^2): new points of spread
    ``new_spread`` pooled by size with n points of error ``error`` (the positive root)."""
    b = 2 * variance * n - new_spread**2
    c = n * n * (variance - error * error)
    return max(0, math.ceil((-b + math.sqrt(b * b - 4 * variance * c)) / (2 * variance)))


def new_spread(final: IntegrationResult) -> float:
    """The spread per point of weighted points drawn with channel i at p_i ∝ sigma_i (:func:`.sample.channel_spreads`
    of ``final``, the final sampler's points, mixed as :func:`madnis.sampler.channel_probabilities` mixes it):
    sqrt(sum_i sigma_i^2 / p_i), what a precision point's spread is expected to be
    (:meth:`.sample.EventPlan.for_precision`)."""
    sigma = channel_spreads(final)
    p = channel_probabilities(sigma, sigma > 0)
    return math.sqrt(float((sigma**2 / p.clamp_min(1e-300)).sum()))


def event_records(source: ProcessSource, events: Unweighted, rng: np.random.Generator) -> EventRecords | None:
    """Step 4: the LHE records of a source's accepted points (one matrix-element evaluation per event)."""
    if len(events.r) == 0:
        return None
    records = source.event_records(events.r, events.channel, rng)
    records.subprocess[:] = source.lprup
    return records


def write_events(
    path: Path,
    parts: Sequence[tuple[ProcessSource, Unweighted, EventRecords | None]],
    sigma: float,
    banner: BannerLike,
    init: LHEInit,
    rng: np.random.Generator,
    processes: int = 1,
) -> Path:
    """Step 5: all sources' events shuffled together, weights averaging ``sigma`` (MadEvent's
    ``event_norm = average``; each source's events average 1 before), one ``<init>`` line per source; written on up
    to ``processes`` cores (:func:`madnis_plugin.lhe.write_lhe`)."""
    written = [(records, unweighted) for _, unweighted, records in parts if records is not None]
    records = EventRecords.concatenate([r for r, _ in written])
    weights = sigma * np.concatenate([u.relative_weight / u.relative_weight.mean() for _, u in written])
    order = rng.permutation(len(records))
    process_lines = [
        LHEProcessInfo(u.cross_section.integral, u.cross_section.error, float(weights.max()), source.lprup)
        for source, u, _ in parts
    ]
    info = replace(init, processes=process_lines)
    return write_lhe(path, records.take(order), weights[order], info, banner, processes)
