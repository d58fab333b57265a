"""Step 1, train or load: a source's sampler, trained with live progress lines or re-used from a saved file.

Why apart: re-use must be decided for every source before any training (an unusable file fails the run in
one line before minutes of training), and the training calls are counted here, apart from the points the
fixed sampler draws afterwards and from the later training batches that enter the quoted cross section (with fixed
channel weights, :mod:`madnis.training`). With ``madnis_steps = auto`` the
progress lines show the projected time to the source's events and the end of training says why it stopped.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from madnis import MadNIS, TrainingProgress
from madnis.config import AUTO
from madnis.reach import ReachCheck
from madnis.sampler import inside_cuts
from madnis.stopping import EfficiencyCheck

from .source import ProcessSource, RunSettings, saved_sampler_path


class SamplerReuseError(ValueError):
    """Re-use was asked for but the saved sampler cannot serve the process (unreadable, other ndim/channels)."""


@dataclass
class TrainedSampler:
    """A fixed sampler ready to draw, with its training history (empty when re-used)."""

    madnis: MadNIS
    losses: list[float]
    running_integrals: list[float]
    seconds: float
    calls: int  # integrand calls spent training (0 when re-used; a final check's and the kept batches' are the integration's)
    reused_from: Path | None = None
    stop_reason: str = ""  # why automatic training (steps = auto) stopped
    calls_inside: int = 0  # those of the calls inside the cuts (madnis.sampler.inside_cuts)

    @property
    def running_integral(self) -> float:
        """The sum of the running channel integrals: the sampler's cross-section estimate before integrating."""
        return float(self.madnis.statistics.integral.sum())


def progress_printer(name: str, every: int, log: Callable[[str], None]) -> Callable[[TrainingProgress], None]:
    """A training callback printing one line every ``every`` steps (and the last), with the projection of
    ``steps = auto``: the projected seconds to the events and the estimated unweighting efficiency."""

    def callback(p: TrainingProgress) -> None:
        if p.step % every == 0 or p.last:
            dropped = f"  dropped {p.dropped_channels}" if p.dropped_channels else ""
            projection = ""
            if p.projection is not None:
                projection = (
                    f"  -> {p.projection.n_events:.0f} events in {p.projection.total:.1f} s "
                    f"(eff {100 * p.projection.efficiency:.1f}%)"
                )
            log(
                f"  [{name}] step {p.step + 1:5d}/{p.steps}  loss {p.loss:10.4e}  "
                f"sigma {p.integral:11.5g} pb +- {100 * p.rel_error:5.2f}%  lr {p.lr:8.2e}{projection}{dropped}"
            )

    return callback


def saved_sampler(source: ProcessSource, settings: RunSettings, log: Callable[[str], None]) -> MadNIS | None:
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
        madnis.integrand.n_calls = madnis.integrand.n_inside = 0  # count this run's integrand calls only
        log(f"Reusing trained sampler from {path} for {source.name}: training skipped")
        return madnis
    raise SamplerReuseError(
        f"cannot re-use the trained sampler {path} for {source.name}: {reason} "
        f"(delete it or switch re-use off to train again)"
    )


def train_or_load(
    index: int,
    source: ProcessSource,
    saved: MadNIS | None,
    settings: RunSettings,
    log: Callable[[str], None],
    n_events: float | Callable[[float], float] | None = None,
    on_estimate: Callable[[float], None] | None = None,
) -> TrainedSampler:
    """Train source ``index`` (seed offset by the index), or take ``saved`` as it is.

    ``n_events``: the source's events that ``steps = auto`` projects to (a number or a function of the running
    integral, see :func:`.events.training_share`); None: all of ``settings.nevents`` (one source).
    ``on_estimate``: called with the running cross-section estimate on every progress line and whenever the steps
    stop (before an efficiency check), for the other P-dirs' jobs (:func:`.jobs.share_bound`, their share of the
    events that ``steps = auto`` projects to).
    """
    if saved is not None:
        return TrainedSampler(saved, [], [], 0.0, 0, saved_sampler_path(settings.output_dir, source.name))
    start = time.time()
    config = replace(settings.training, seed=settings.training.seed + index)
    budget = f"{config.steps} steps"
    if config.steps == AUTO:
        budget = f"steps while the projected time to the events falls (at most {config.max_minutes:g} min)"
    madnis = MadNIS(source.integrand, config)
    log(
        f"Training MadNIS for {source.name}: {source.integrand.n_channels} channels, ndim {source.integrand.ndim} "
        f"(flow: {config.flow_units(source.integrand.ndim)} hidden units, "
        f"{madnis.sampler.defensive_fraction:g} of the points flat), {budget} x {config.batch_size} points"
    )
    printer = progress_printer(source.name, settings.progress_every, log)

    def callback(p: TrainingProgress) -> None:
        printer(p)
        if on_estimate is not None and (p.last or p.step % settings.progress_every == 0):
            on_estimate(float(madnis.statistics.integral.sum()))

    history = madnis.train(callback, settings.nevents if n_events is None else n_events, settings.source_precision)
    ends = history.averaged + history.checks + history.reach  # each end of training, then its checks
    for item in sorted(ends, key=lambda x: (x.step, isinstance(x, EfficiencyCheck | ReachCheck))):
        log(f"  [{source.name}] {item.describe()}")
    reason = "" if history.stop is None else history.stop.describe("madnis_max_minutes")
    if reason:
        log(f"  [{source.name}] training stopped: {reason}")
    progress = history.progress
    reused = [s for _, s in madnis.check_samples] + list(madnis.trainer.kept)  # the final integration's points
    return TrainedSampler(
        madnis,
        [p.loss for p in progress],
        [p.integral for p in progress],
        time.time() - start,
        madnis.n_calls - sum(len(s.weight) for s in reused),
        stop_reason=reason,
        calls_inside=madnis.integrand.n_inside - sum(inside_cuts(s.weight) for s in reused),
    )
