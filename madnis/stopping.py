"""``steps = "auto"``: train while the projected time to the wanted unweighted events still falls.

After online step k the projection is

    T_k = t_k + (N - R_k) / eps_k * c_k

with t_k the wall seconds since training began (VEGAS pre-training included), N the unweighted events this
sampler must deliver, R_k the events that points drawn already give (the kept training batches,
:mod:`madnis.training`, at eps_k; the points of checks that resumed training at their measured efficiency), eps_k
the estimated unweighting efficiency and c_k the measured seconds per weighted point. R_k makes the projected time
(printed, and the patience below is a share of it) and the check's size honest: on ``g g > t t~ g``, a part of 5000
events at ~10 %, ~22k of the ~50k points the events need are kept training points. Training pays while T_k falls: a
step costs its seconds now and saves N c (1/eps_before - 1/eps_after) later (the kept points count at eps_k, so their
term is N/eps_k - K_k; each online batch adds to K_k), so a cheap integrand stops soon and an expensive one trains
longer.

The estimates use only what training already has (no extra integrand call):

- eps_k: the efficiency by MadEvent's rule (:func:`madnis.unweighting.max_weight` with ``max_overweight``,
  efficiency <|w|> / w_max) of the last ``window`` online batches pooled, each point weighted w / p_i with p_i
  its channel's share of its batch (the stratified final integration's points are unweighted the same way).
  Pooled, because w_max with a share of 1e-3 of the weight needs thousands of points: one batch of 1024 sees
  no tail, and the median of batch efficiencies errs high and hardly moves while training works. Measured on
  ``g g > w+ d u~ g`` (48 channels, 1000 steps in 250-step segments; truth: the multichannel efficiency of
  100k fresh points): truth 0.39 %, 1.07 %, 1.05 %, 2.11 %; pooled 0.78 %, 1.10 %, 0.53 %, 1.16 %; median
  1.59 %, 2.12 %, 1.99 %, 3.06 % -- with the median, training stopped after 133 steps at an estimated
  1.77 % (true 0.11 %). The pooled value is noisy (a rare huge weight lowers it while its batch is in the
  window), which the patience below absorbs; it lags by about ``window / 2`` online steps. Until ``window``
  online batches are in, the projection is shown but not used.
  Even pooled, a window is far smaller than the sample the events need (n_events / eps points), and w_max grows
  with the sample while the tail fills in. The rule measures that growth on the window itself: the mean
  efficiency of its two halves against the whole gives the loss per doubling of the sample, applied for the
  log2(n_events / eps / window points) doublings up to the needed sample (at least ``MIN_EXTRAPOLATION`` of
  the pooled value). A light-tailed integrand loses nothing per doubling and keeps its pooled value.
- c_k: the seconds spent drawing all online batches so far (flow sampling, integrand, channel weights) per
  point; the cost hardly changes while training, so the running mean over every batch is the least noisy.
  Small training batches carry more overhead per point than the final large ones, so c_k errs high:
  training then runs somewhat longer than the optimum, not shorter.
- N: the caller's function of the running integral (e.g. this process's share of the run's events).

Check: the window's estimate errs high while the weights have a long tail (a few thousand points do not see
it), so when the rule says stop, :meth:`madnis.MadNIS.train` measures the efficiency on fresh points: the
sample the events need at the claimed efficiency, less what the points drawn already give (R_k above), between ``MIN_CHECK_POINTS`` and ``auto_check_points`` (an integration; counted
calls): a sample of the generation's size shows the w_max the generation will meet, and its points are not wasted
(they are the final integration's and unweight into events). Twice that sample, as before,
drew points no event needed where the events need fewer than the cap (``g g > t t~ g`` split in two channel
parts: 2 x 100k check points where 2 x 50k serve the events). If that is below ``CHECK_TOLERANCE`` x the best projection's
estimate (the sampler has only improved since), every later
estimate is scaled by measured / estimate and training goes on; the next stop is checked again. The check's own
projection (now, at the measured efficiency) becomes the best: it is the most reliable projection there is, so
later steps must promise less time than it. Measured on ``g g > w+ d u~ g``, 10k events: training stopped at
step 499 on an estimate of 1.32 % where the run's events came at 0.46 %; and, forgetting the best instead, a
channel part checked at step 405 (1.21 %, projected 46.8 s) trained on to step 897 (1.71 %) on scaled estimates
that never projected less than 54.2 s.
One check scales the estimates down by at most ``MIN_RECALIBRATION`` (4x): a young sampler's check can be far below
the window's estimate because of a handful of weights, and the sampler that training makes of it loses them, so the
full factor would keep every later estimate that far too low and training going long after it paid. Measured on
``p p > w+ j j``'s ``q q > w+ q q`` P-dir (one job alone, seeds 41-46, ``benchmarks/results/stop44_measurements.md``):
first checks of 0.02 %, 0.03 % and 0.16 % against estimates of 0.95 %, 0.62 % and 0.99 % kept those jobs training
to steps 1581, 1089 and 701 (134, 99 and 68 s), where the checks that ended them measured 6.0 %, 8.5 % and 3.7 %;
with the factor at most 4x they stopped at steps 757, 714 and 671 (69, 62 and 62 s) measuring 8.4 %, 8.8 % and
3.0 %. Where the sampler keeps its tail, the next check finds it again and scales once more (or stops training if
it did not improve, below).
A check after resumed training sends it back again only if the measured efficiency rose since the last check by more
than the check tolerates (measured x ``CHECK_TOLERANCE`` > the last check's): on a plateau the window's estimate
still errs high on lucky windows, and every resume costs at least ``patience_share`` of the projected time. Measured
on ``g g > w+ d u~ g``, 100k events: a channel part checked 2.45 % at step 1179 (estimated 4.95 %), 1.84 % at step
2191 (estimated 2.80 %) and 3.26 % at step 3589, 175 s of training, while the other part, stopped at step 1253
(3.14 %), unweighted its generation chunks at the same ~3 % (chunks of 1000 events, 40k points each). A check that
ends training below the last one (:attr:`EfficiencyCheck.fell`) hands the generation the sampler of that last check
(:meth:`madnis.MadNIS.train`).

Rule: the smallest projection so far and its step are kept; training stops once at least ``min_steps``
steps were made, ``patience`` online steps in a row brought no new smallest projection *and* the training
seconds since that step reach ``patience_share`` (25 %) of the smallest projection; or as soon as
``max_seconds`` have passed (checked after every step). Patience rather than the first rise, because eps_k
is noisy and plateaus before improving again: one unlucky window or a plateau must not end training. The
time share scales the patience with what is at stake: training past the best step costs at most 25 % of the
best projected time when no improvement comes, while an expensive process (generation >> training) waits
out long plateaus (TwoResonances4D, 1M events at ~20 us per point: efficiency 0.17 from step 80 to 160,
then 0.27; a patience of 10 online steps alone stopped at step 100; ``g g > w+ d u~ g``, 10k events: the
batch error stays at 8-9 % from step 200 to 450 and the efficiency rises from 0.4 % at step 250 to 2 % at
step 1000, and with a 5 % share training stopped at step 245), and a cheap one stops soon after
``min_steps``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from .config import TrainingConfig
from .unweighting import madevent_efficiency

MIN_EXTRAPOLATION = 0.1  # the extrapolated efficiency is at least this share of the pooled window's
CHECK_TOLERANCE = 0.7  # an efficiency check below this share of the estimate recalibrates and resumes training
MIN_RECALIBRATION = 0.25  # one check scales the estimates down by at most this factor (module docstring)
MIN_CHECK_POINTS = 10_000  # an efficiency check draws at least these points


@dataclass(frozen=True)
class Projection:
    """The projected time to ``n_events`` after ``step`` (0-based): training so far plus generation."""

    step: int
    elapsed: float  # training seconds so far
    n_events: float
    efficiency: float
    seconds_per_point: float
    ready_events: float = 0.0  # what the points drawn already for the events give (kept batches, resumed checks)
    spread: float = 0.0  # the window's relative spread per point, std(w) / mean(w)
    relative_error: float = 0.0  # the integral's target relative error (0: none)

    @property
    def precision_points(self) -> float:
        """The weighted points the integral's ``relative_error`` needs at ``spread``, less those drawn already (the
        ready events' points)."""
        if self.relative_error <= 0:
            return 0.0
        return max(0.0, (self.spread / self.relative_error) ** 2 - self.ready_events / max(self.efficiency, 1e-300))

    @property
    def points_to_draw(self) -> float:
        """The weighted points still to draw for ``n_events`` (the events the points drawn already do not give) or,
        where it asks more, for the integral's ``relative_error``."""
        if self.efficiency <= 0:
            return math.inf
        return max(max(0.0, self.n_events - self.ready_events) / self.efficiency, self.precision_points)

    @property
    def generation(self) -> float:
        """Seconds to draw :attr:`points_to_draw`."""
        return self.points_to_draw * self.seconds_per_point

    @property
    def total(self) -> float:
        return self.elapsed + self.generation

    def describe(self) -> str:
        ready = f", {self.ready_events:.0f} of them from points drawn in training" if self.ready_events >= 0.5 else ""
        precision = ""
        if self.relative_error > 0 and self.precision_points * self.efficiency > self.n_events - self.ready_events:
            precision = (
                f"; the integral's {100 * self.relative_error:.2g}% at {self.spread:.3g} spread per point asks "
                f"{self.precision_points:.0f} points, more than the events"
            )
        return (
            f"{self.total:.1f} s (training {self.elapsed:.1f} s + {self.n_events:.0f} events {self.generation:.1f} s "
            f"at efficiency {100 * self.efficiency:.2f}% and {1e6 * self.seconds_per_point:.1f} us per point{ready}"
            f"{precision})"
        )


@dataclass(frozen=True)
class StopReason:
    """Why automatic training ended after ``steps`` steps: the projection stopped falling, or time ran out."""

    steps: int
    seconds: float
    best: Projection | None
    max_minutes_reached: bool

    def describe(self, max_minutes_name: str = "max_minutes") -> str:
        """One line; ``max_minutes_name`` is the setting's name where the reader knows it (a run_card entry)."""
        if self.max_minutes_reached:
            best = f"; smallest projection at step {self.best.step + 1}: {self.best.describe()}" if self.best else ""
            return f"{max_minutes_name} reached after step {self.steps} ({self.seconds:.1f} s of training){best}"
        assert self.best is not None
        return (
            f"projected time to {self.best.n_events:.0f} events stopped falling at step {self.best.step + 1}: "
            f"{self.best.describe()}; stopped after step {self.steps}"
        )


@dataclass(frozen=True)
class EfficiencyCheck:
    """After ``step`` steps, the multichannel efficiency of ``points`` fresh points (``measured``) against the
    rule's estimate and the last check's measurement (``previous``; None for the first check). ``resumed``: training
    goes on with the estimates scaled by measured / estimate (module docstring)."""

    step: int
    points: int
    estimate: float
    measured: float
    previous: float | None
    out_of_time: bool  # max_seconds had passed: no resume whatever the check says
    kept_step: int | None = None  # training ended with the sampler of the last check's step (it measured higher)

    @property
    def fell(self) -> bool:
        """Training ends here and the sampler measured less than at the last check, which resumed training."""
        return not self.resumed and self.previous is not None and self.measured < self.previous

    @property
    def below_estimate(self) -> bool:
        return self.measured < CHECK_TOLERANCE * self.estimate

    @property
    def stalled(self) -> bool:
        """The training since the last check did not raise the measured efficiency by more than the tolerance."""
        return self.previous is not None and self.measured * CHECK_TOLERANCE <= self.previous

    @property
    def resumed(self) -> bool:
        return self.below_estimate and not self.stalled and not self.out_of_time

    @property
    def scale(self) -> float:
        """What a resumed check scales the later estimates by: measured / estimate, at least ``MIN_RECALIBRATION``
        (module docstring)."""
        return max(self.measured / self.estimate, MIN_RECALIBRATION) if self.estimate > 0 else 1.0

    def describe(self) -> str:
        if self.resumed and self.scale == MIN_RECALIBRATION:
            verdict = f"training goes on with the estimates scaled by {MIN_RECALIBRATION:g}, a check's most"
        elif self.resumed:
            verdict = "training goes on with the estimates scaled to it"
        elif not self.below_estimate:
            verdict = "the estimate holds"
        elif self.stalled:
            verdict = f"training stops: the training since the last check ({100 * self.previous:.2f}%) did not pay"
        else:
            verdict = "training stops: its time is up"
        kept = f"; the sampler of step {self.kept_step} is kept" if self.kept_step is not None else ""
        return (
            f"efficiency check after step {self.step}: {100 * self.measured:.2f}% on {self.points} points, "
            f"estimated {100 * self.estimate:.2f}%; {verdict}{kept}"
        )


class StoppingRule:
    """Decides when automatic training stops; see the module docstring for the projection and the rule.

    ``n_events`` is a number or a function of the running integral; ``relative_error``, a function of ``n_events``:
    the integral's target relative error (None: the events alone); ``clock`` (seconds) can be injected for tests.
    """

    def __init__(
        self,
        n_events: float | Callable[[float], float],
        *,
        relative_error: Callable[[float], float] | None = None,
        max_seconds: float = math.inf,
        min_steps: int = 100,
        patience: int = 10,
        window: int = 8,
        max_overweight: float = 1e-3,
        patience_share: float = 0.25,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.n_events = n_events if callable(n_events) else lambda _integral: float(n_events)
        self.relative_error = relative_error or (lambda _n_events: 0.0)
        self.max_seconds, self.min_steps, self.patience = max_seconds, min_steps, patience
        self.max_overweight, self.patience_share, self.clock = max_overweight, patience_share, clock
        self.start = clock()
        self.window = window
        self.batches: deque[torch.Tensor] = deque(maxlen=window)
        self.draw_seconds, self.points = 0.0, 0
        self.best: Projection | None = None
        self.last: Projection | None = None
        self.since_best = 0
        self.calibration = 1.0
        self.check_events = 0.0  # events of the points of checks that resumed training (recalibrate)

    @classmethod
    def from_config(
        cls,
        config: TrainingConfig,
        n_events: float | Callable[[float], float],
        clock: Callable[[], float] | None = None,
        relative_error: Callable[[float], float] | None = None,
    ) -> StoppingRule:
        """The rule ``config`` describes (``max_minutes``, ``auto_*``, ``max_overweight``)."""
        return cls(
            n_events,
            relative_error=relative_error,
            max_seconds=60 * config.max_minutes,
            min_steps=config.auto_min_steps,
            patience=config.auto_patience,
            window=config.auto_window,
            max_overweight=config.max_overweight,
            clock=clock or time.perf_counter,
        )

    def elapsed(self) -> float:
        return self.clock() - self.start

    def observe(
        self, step: int, weights: torch.Tensor, draw_seconds: float, integral: float, kept_points: int = 0
    ) -> Projection:
        """Take online batch ``step``: its points' weights w / p_i, the seconds drawing it took, the running integral
        and the training points kept so far for the events (:mod:`madnis.training`; counted at the estimated
        efficiency, with the events of the points of checks that resumed training, :meth:`recalibrate`)."""
        weights = weights.detach().double().abs().cpu()
        self.batches.append(torch.where(torch.isfinite(weights), weights, torch.zeros_like(weights)))
        self.draw_seconds, self.points = self.draw_seconds + draw_seconds, self.points + weights.numel()
        n_events = self.n_events(integral)
        efficiency = self.efficiency(n_events)
        cost = self.draw_seconds / self.points
        projection = Projection(
            step,
            self.elapsed(),
            n_events,
            efficiency,
            cost,
            self.ready_events(kept_points, efficiency),
            self.spread(),
            self.relative_error(n_events),
        )
        self.last = projection
        if len(self.batches) < self.window:
            return projection
        if self.best is None or projection.total < self.best.total:
            self.best, self.since_best = projection, 0
        else:
            self.since_best += 1
        return projection

    def efficiency(self, n_events: float) -> float:
        """The pooled window's efficiency, extrapolated to the sample that ``n_events`` need (module docstring)."""
        batches = list(self.batches)
        pooled = torch.cat(batches)
        full = self._efficiency(pooled)
        if len(batches) < 2 or full <= 0:
            return self.calibration * full
        half = len(batches) // 2
        halves = 0.5 * (self._efficiency(torch.cat(batches[:half])) + self._efficiency(torch.cat(batches[half:])))
        loss_per_doubling = min(1.0, full / halves) if halves > 0 else 1.0
        doublings = max(0.0, math.log2(n_events / full / pooled.numel()))
        return self.calibration * full * max(loss_per_doubling**doublings, MIN_EXTRAPOLATION)

    def spread(self) -> float:
        """The pooled window's relative spread per point, std(w) / mean(w) (its tail unseen, as for eps_k)."""
        pooled = torch.cat(list(self.batches))
        mean = float(pooled.mean())
        return float(pooled.std()) / mean if mean > 0 and pooled.numel() > 1 else 0.0

    def ready_events(self, kept_points: int, efficiency: float) -> float:
        """R: the events of the points drawn already, ``kept_points`` training points at ``efficiency`` and the points
        of checks that resumed training at what they measured."""
        return kept_points * efficiency + self.check_events

    def recalibrate(self, factor: float, measured: float, kept_check_points: int = 0) -> None:
        """Scale every later efficiency estimate by ``factor`` (a resumed check's :attr:`EfficiencyCheck.scale`): the
        check found them off, measuring ``measured`` now on its points, of which ``kept_check_points`` unweight into
        events. The best projection, which rested on the old scale, becomes the check's: now, at the measured
        efficiency (the clock and the window go on)."""
        self.calibration *= factor
        self.check_events += kept_check_points * measured
        last = self.last
        self.best, self.since_best = None, 0
        if last is not None:
            ready = last.ready_events + kept_check_points * measured
            self.best = replace(last, elapsed=self.elapsed(), efficiency=measured, ready_events=ready)

    def restart(self) -> None:
        """Forget every projection, the window, the scale and the points of checks (a reach check failed and training
        goes on with a remedy: :mod:`madnis.reach`); the clock and the measured cost per point go on."""
        self.batches.clear()
        self.best, self.last, self.since_best = None, None, 0
        self.calibration, self.check_events = 1.0, 0.0

    def _efficiency(self, weights: torch.Tensor) -> float:
        return madevent_efficiency(weights, self.max_overweight) if weights.sum() > 0 else 0.0

    def stop(self, step: int) -> StopReason | None:
        """Called after step ``step`` (0-based): why to stop now, or None to go on."""
        seconds = self.elapsed()
        if seconds >= self.max_seconds:
            return StopReason(step + 1, seconds, self.best, max_minutes_reached=True)
        best = self.best
        if (
            step + 1 >= self.min_steps
            and best is not None
            and self.since_best >= self.patience
            and seconds - best.elapsed >= self.patience_share * best.total
        ):
            return StopReason(step + 1, seconds, self.best, max_minutes_reached=False)
        return None
