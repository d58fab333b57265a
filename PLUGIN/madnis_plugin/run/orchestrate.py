"""One MadNIS run over several processes: train, integrate, share events, unweight, write LHE.

Why: the built-in demo and the MG5aMC plugin (one source per MadEvent P-dir, through the Fortran
bridge) run exactly the same sequence, so it lives here, free of MG5aMC imports. A process source is
an :class:`~madnis.integrand.Integrand` plus a function turning accepted points into
:class:`~..lhe.EventRecords`.

Sequence (:func:`run_processes`): for each source train MadNIS (live progress lines), or with
``reuse`` load the sampler an earlier run saved as ``output_dir/{name}.madnis.pt``, and integrate;
print MadEvent's results summary; split ``nevents`` over the sources by cross section (largest
remainder, so the counts add up exactly); per source draw weighted batches until exactly its share of
events is accepted against MadEvent's w_max of all points drawn (:func:`madnis.unweighting.max_weight`,
share ``training.max_overweight``; overweight events keep weight w / w_max, then all weights are
normalised to mean sigma as MadEvent's ``event_norm = average``);
build the event records, shuffle the sources together and write the LHE atomically. Integration and
sampling are seeded by the run's seed (``training.seed``) and the source index alone, so a re-used sampler
with a new seed gives independent events and with the training run's seed repeats that run's events.

Before any training, :func:`check_run` refuses in one line what would fail later (``nevents`` < 1, an
output or events directory that cannot be written). Trained samplers are saved (atomically) only once
the event file is written, so a failed or interrupted run never replaces a good saved sampler.
"""

from __future__ import annotations

import math
import pickle
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from madnis import IntegrationResult, MadNIS, TrainingConfig, TrainingProgress, WeightedSample
from madnis.integrand import Integrand
from madnis.unweighting import max_weight, overweight_share, unweighting_efficiency

from ..lhe import BannerLike, EventRecords, LHEInit, LHEProcessInfo, write_lhe

EventRecordFn = Callable[[torch.Tensor, torch.Tensor, np.random.Generator], EventRecords]
Observable = Callable[[torch.Tensor], np.ndarray]  # momenta (n, nexternal, 4) -> one value per point


@dataclass
class ProcessSource:
    """One process (a MadEvent P-dir or a built-in process) as the orchestration sees it.

    ``observable`` (optional, with ``observable_label``) is histogrammed for unweighted events vs the
    weighted truth in the report, e.g. m_ll for Drell-Yan.
    """

    name: str
    integrand: Integrand
    event_records: EventRecordFn
    lprup: int = 1
    channel_names: list[str] | None = None
    observable: Observable | None = None
    observable_label: str = ""


@dataclass
class RunSettings:
    """What one run does; ``training`` is shared by all sources (seed offset by the source index)."""

    nevents: int
    output_dir: Path
    training: TrainingConfig = field(default_factory=TrainingConfig)
    integration_points: int = 100_000
    events_file: str = "events.lhe.gz"
    run_name: str = "run_01"
    tag: str = "tag_1"
    weighted_batch: int = 20_000
    max_weighted_points: int = 20_000_000
    progress_every: int = 10
    save_models: bool = True  # write output_dir/{name}.madnis.pt after training
    reuse: bool = False  # load output_dir/{name}.madnis.pt instead of training (trains when the file is absent)


@dataclass
class SourceResult:
    """Everything a report needs about one source."""

    source: ProcessSource
    losses: list[float]
    running_integrals: list[float]
    result: IntegrationResult
    prior_fractions: np.ndarray  # channel contributions with the prior channel weights (from the weighted sample)
    n_events: int = 0
    w_max: float = 0.0
    efficiency: float = 0.0
    n_overweight: int = 0
    overweight_share: float = 0.0  # share of sigma above w_max over all weighted points drawn
    max_event_weight_ratio: float = 0.0  # largest event weight / mean event weight
    weighted_points: int = 0
    sample_weights: np.ndarray | None = None  # first weighted batch (for plots)
    sample_observable: np.ndarray | None = None
    event_observable: np.ndarray | None = None
    train_seconds: float = 0.0
    n_calls: int = 0  # integrand points evaluated in this run
    reused_from: Path | None = None  # the saved sampler used instead of training


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
        """Unweighting efficiency over all sources: accepted / weighted points drawn."""
        drawn = sum(s.weighted_points for s in self.sources)
        return sum(s.efficiency * s.weighted_points for s in self.sources) / drawn if drawn else 0.0


class SamplerReuseError(ValueError):
    """Re-use was asked for but the saved sampler cannot serve the process (unreadable, other ndim/channels)."""


class RunCheckError(ValueError):
    """The run cannot succeed as set up; found before any training (one-line message)."""


def check_run(settings: RunSettings) -> None:
    """Everything about the settings that could fail after training: ``nevents`` and writable directories."""
    if settings.nevents < 1:
        raise RunCheckError(f"nevents = {settings.nevents}: at least one event must be asked for")
    for directory in dict.fromkeys([settings.output_dir, (settings.output_dir / settings.events_file).parent]):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=directory).close()
        except OSError as error:
            raise RunCheckError(f"cannot write to {directory}: {error.strerror or error}") from None


_INTEGRATION, _SAMPLING, _UNWEIGHTING = 1, 2, 3  # random streams of one source (and of its sampling seed)


def stream_seed(seed: int, index: int, stream: int) -> int:
    """Seed of one random stream (integration or sampling) of source ``index`` in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed % 2**63, index, stream]).generate_state(1, np.uint64)[0] % 2**63)


def saved_sampler_path(output_dir: Path, name: str) -> Path:
    """Where a source's trained sampler is saved and re-used from."""
    return output_dir / f"{name}.madnis.pt"


def progress_printer(name: str, every: int, log: Callable[[str], None]) -> Callable[[TrainingProgress], None]:
    """A training callback printing one line every ``every`` steps (and the last)."""

    def callback(p: TrainingProgress) -> None:
        if p.step % every == 0 or p.step == p.steps - 1:
            dropped = f"  dropped {p.dropped_channels}" if p.dropped_channels else ""
            log(
                f"  [{name}] step {p.step + 1:5d}/{p.steps}  loss {p.loss:10.4e}  "
                f"sigma {p.integral:11.5g} pb +- {100 * p.rel_error:5.2f}%  lr {p.lr:8.2e}{dropped}"
            )

    return callback


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


def madevent_summary(run_name: str, tag: str, cross_section: float, error: float, nevents: int) -> str:
    """MadEvent's end-of-run block."""
    return (
        f"  === Results Summary for run: {run_name} tag: {tag} ===\n\n"
        f"     Cross-section :   {cross_section:.4g} +- {error:.3g} pb\n"
        f"     Nb of events :  {nevents}\n"
    )


def _saved_sampler(source: ProcessSource, settings: RunSettings, log: Callable[[str], None]) -> MadNIS | None:
    """The sampler saved by an earlier run when ``settings.reuse`` is on and the file exists, else None (train)."""
    if not settings.reuse:
        return None
    path = saved_sampler_path(settings.output_dir, source.name)
    if not path.exists():
        log(f"No trained sampler {path} to re-use for {source.name}: training it")
        return None
    try:
        madnis = MadNIS.load(path, source.integrand, device=settings.training.device)
    except ValueError as error:  # another checkpoint format version, ndim or number of channels
        reason = str(error).removeprefix(f"{path}: ")
    except (RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as error:  # torch.load, load_state_dict
        reason = f"not a MadNIS checkpoint for this process ({type(error).__name__})"
    else:
        madnis.integrand.n_calls = 0  # count this run's integrand calls only
        log(f"Reusing trained sampler from {path} for {source.name}: training skipped")
        return madnis
    raise SamplerReuseError(
        f"cannot re-use the trained sampler {path} for {source.name}: {reason} "
        f"(delete it or switch re-use off to train again)"
    )


def _train_and_integrate(
    index: int, source: ProcessSource, saved: MadNIS | None, settings: RunSettings, log: Callable[[str], None]
) -> tuple[MadNIS, SourceResult]:
    """Train (unless ``saved`` is given) and integrate one source."""
    start = time.time()
    path = saved_sampler_path(settings.output_dir, source.name)
    if saved is None:
        config = replace(settings.training, seed=settings.training.seed + index)
        log(
            f"Training MadNIS for {source.name}: {source.integrand.n_channels} channels, ndim {source.integrand.ndim}, "
            f"{config.steps} steps x {config.batch_size} points"
        )
        madnis = MadNIS(source.integrand, config)
        progress = madnis.train(progress_printer(source.name, settings.progress_every, log)).progress
    else:
        madnis, progress = saved, []
    result = madnis.integrate(
        settings.integration_points, seed=stream_seed(settings.training.seed, index, _INTEGRATION)
    )
    log(f"  [{source.name}] sigma = {result.integral:.6g} +- {result.error:.3g} pb ({time.time() - start:.1f} s)")
    out = SourceResult(
        source=source,
        losses=[p.loss for p in progress],
        running_integrals=[p.integral for p in progress],
        result=result,
        prior_fractions=np.zeros(source.integrand.n_channels),
        train_seconds=time.time() - start,
        reused_from=None if saved is None else path,
    )
    return madnis, out


def _prior_fractions(sample: WeightedSample, n_channels: int) -> np.ndarray:
    """Channel shares sum_i E[w alpha_i^prior] / E[w]: what the prior channel weights would give.

    From the ``alpha_prior`` the weighted points carry: no integrand call is made for this diagnostic.
    """
    w = sample.weight.double().cpu()
    if sample.alpha_prior is None or w.sum() <= 0:
        return np.full(n_channels, 1.0 / n_channels)
    return ((w[:, None] * sample.alpha_prior.double().cpu()).sum(0) / w.sum()).numpy()


def _generate(
    madnis: MadNIS, out: SourceResult, n_events: int, settings: RunSettings, seed: int, log: Callable[[str], None]
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Draw weighted batches until exactly ``n_events`` are accepted; returns (r, channel, relative weights).

    As MadEvent's combine step: every point gets its uniform number u once, and after each batch w_max is
    recomputed over all points drawn so far (so all of them are kept in memory); a point is accepted when
    u * w_max < |w|, the first ``n_events`` accepted are the events, overweights keep weight w / w_max.
    """
    source = out.source
    batch = madnis.sample_weighted(settings.weighted_batch, seed=seed)
    out.sample_weights = batch.weight.double().cpu().numpy()
    out.prior_fractions = _prior_fractions(batch, source.integrand.n_channels)
    generator = torch.Generator().manual_seed(stream_seed(seed, 0, _UNWEIGHTING))  # u independent of the points
    points: list[tuple[torch.Tensor, torch.Tensor]] = []
    weight_parts: list[torch.Tensor] = []
    uniform_parts: list[torch.Tensor] = []
    observable_parts: list[np.ndarray] = []  # the observable of every point drawn (events are a subset)
    while True:
        points.append((batch.r.cpu(), batch.channel.cpu()))
        if source.observable is not None and batch.momenta is not None:
            observable_parts.append(source.observable(batch.momenta.double().cpu()))
        weight_parts.append(batch.weight.double().cpu())
        uniform_parts.append(torch.rand(len(batch.weight), generator=generator, dtype=torch.float64))
        weights, uniform = torch.cat(weight_parts), torch.cat(uniform_parts)
        if not (weights.abs() > 0).any():
            raise RuntimeError(f"{source.name}: no positive weight in {len(weights)} points")
        w_max = max_weight(weights, settings.training.max_overweight)
        accepted = torch.nonzero(uniform * w_max < weights.abs())[:, 0]
        if len(accepted) >= n_events:
            break
        if len(weights) >= settings.max_weighted_points:
            raise RuntimeError(
                f"{source.name}: only {len(accepted)} of {n_events} events after {len(weights)} weighted points "
                f"(unweighting efficiency {len(accepted) / len(weights):.2e}); train longer or ask fewer events"
            )
        batch = madnis.sample_weighted(settings.weighted_batch, seed=seed + len(weights))
    index = accepted[:n_events]
    r = torch.cat([p[0] for p in points])[index]
    channel = torch.cat([p[1] for p in points])[index]
    relative = (torch.sign(weights[index]) * weights[index].abs().clamp(min=w_max) / w_max).numpy()
    if observable_parts:
        out.sample_observable = observable_parts[0]
        out.event_observable = np.concatenate(observable_parts)[index.numpy()]
    out.w_max, out.weighted_points = w_max, len(weights)
    out.efficiency = unweighting_efficiency(weights, w_max)
    out.overweight_share = overweight_share(weights, w_max)
    out.n_overweight = int((weights[index].abs() > w_max).sum())
    out.max_event_weight_ratio = float(np.abs(relative).max() / np.abs(relative).mean())
    log(
        f"  [{source.name}] {n_events} events from {len(weights)} weighted points: efficiency "
        f"{100 * out.efficiency:.2f}% (MadEvent's rule: w_max {w_max:.4g} pb, {100 * out.overweight_share:.3f}% "
        f"of sigma above it), {out.n_overweight} overweight events kept with weight w/w_max, "
        f"largest event weight / mean {out.max_event_weight_ratio:.3g}"
    )
    return r, channel, relative


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
    saved = [_saved_sampler(s, settings, log) for s in sources]  # an unusable file fails before any training
    trained = [_train_and_integrate(i, s, m, settings, log) for i, (s, m) in enumerate(zip(sources, saved))]
    sigma = sum(out.result.integral for _, out in trained)
    error = math.sqrt(sum(out.result.error**2 for _, out in trained))
    shares = share_events(settings.nevents, [out.result.integral for _, out in trained])
    parts: list[EventRecords] = []
    event_weights: list[np.ndarray] = []
    rng = np.random.default_rng(settings.training.seed)
    for index, ((madnis, out), n_events) in enumerate(zip(trained, shares)):
        out.n_events, out.n_calls = n_events, madnis.n_calls
        if n_events == 0:
            continue
        r, channel, relative = _generate(
            madnis, out, n_events, settings, stream_seed(settings.training.seed, index, _SAMPLING), log
        )
        records = out.source.event_records(r, channel, rng)
        records.subprocess[:] = out.source.lprup
        out.n_calls = madnis.n_calls
        parts.append(records)
        event_weights.append(relative / relative.mean())  # each source's events average 1
    records = EventRecords.concatenate(parts)
    weights = sigma * np.concatenate(event_weights)
    order = rng.permutation(len(records))
    processes = [
        LHEProcessInfo(out.result.integral, out.result.error, float(weights.max()), out.source.lprup)
        for _, out in trained
    ]
    lhe_path = write_lhe(
        settings.output_dir / settings.events_file,
        records.take(order),
        weights[order],
        replace(init, processes=processes),
        banner,
    )
    if settings.save_models:  # only now: a failed or interrupted run keeps the samplers saved before
        for madnis, out in trained:
            if out.reused_from is None:
                madnis.save(saved_sampler_path(settings.output_dir, out.source.name))
    log("")
    log(madevent_summary(settings.run_name, settings.tag, sigma, error, len(records)))
    return RunResult(sigma, error, len(records), lhe_path, [out for _, out in trained], time.time() - start)
