"""MadNIS training loop: online and buffered steps, stratified batches, channel dropping, safe optimisation.

Every ``buffered_steps + 1``-th step is *online*: a fresh batch is drawn with points per channel from
:mod:`madnis.stratification`, evaluated (integrand calls), stored in the :mod:`madnis.buffer` and trained on;
the other steps reuse a stored batch, reweighted by q_model / q_sample in :mod:`madnis.losses`. An online step's
q_model is taken with the parameters that drew the batch, so it replays the flow's splines of drawing it
(:class:`madnis.sampler.DrawRecord`) instead of inverting the flow again. Every step trains on its batch's points
inside the cuts alone, with the others' counts (:mod:`madnis.buffer`, ``Trainer.drop_zeros``). Online
batches update the running I_i and sigma_i; at ``config.drop_step`` the negligible channels are dropped
(:mod:`madnis.dropping`). A step whose loss or gradient is not finite is skipped and counted, so a NaN never
reaches the weights. With ``config.steps = "auto"`` a :class:`~madnis.stopping.StoppingRule` fed by the online
batches decides when to stop (the steps run otherwise are exactly ``config.steps``). Integrand values are divided by a fixed scale (the first batch's |I|) so the loss
and gradient clipping do not depend on the units of the cross section. Losses run in float64.

Each online batch is an importance sample of I like any other: its channel counts are fixed before it is drawn, and
its points' w = alpha_i f / q_i, with the channel weights and densities that drew them, estimate the I_i of those
channel weights, which sum to I whatever they are (learned channel weights change from batch to batch: each batch is
then a sample of its own, :class:`madnis.integration.SamplerPools`). The latest :data:`KEPT_SHARE` of the online
batches (at most :data:`KEPT_POINTS` points, none from before channel dropping, which changes the active channels) is
therefore kept (:meth:`Trainer.kept_batches`) for the quoted cross section and the events, as MadEvent's survey
iterations count in its cross section: their integrand calls are already paid. Why the latest quarter: they count
towards the integration's points one for one, and earlier batches carry more variance per point than the final
sampler (``p p > t t~ j``, 10k events, seeds 41-52: the later half gave an error of 1.28 pb, the later quarter 1.20, at
the same wall time; ``g g > w+ d u~ g`` alike, ``benchmarks/results/stop36_measurements.md``). Which batches are kept
depends on how many online batches training made (the share, the cap), never on a batch's own weights directly; a
batch with more active channels than points, some of them without a point, is no sample of I and is not kept. Whether
batch b is drawn at all is decided before it is drawn, so the batches up to the stop are unbiased (optional stopping);
the lower end, a share of the final count, depends on when the rule stopped, which it decides from the batches'
weights: only batches near it are affected, which move the stop only through a best projection of theirs (rare while
the sampler improves) or through training, so the effect is second order (measured:
``benchmarks/results/launch_pulls_*.md``).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .adam import Adam
from .averaging import AveragedParameters, ParameterAverage
from .buffer import BufferedBatch, SampleBuffer
from .config import TrainingConfig
from .dropping import channels_to_drop
from .integration import ChannelAccumulator
from .losses import LOSSES, LOSSES_BLIND_TO_ZEROS
from .reach import ReachCheck
from .sampler import CountingIntegrand, DrawRecord, MultiChannelSampler, WeightedSample
from .stopping import EfficiencyCheck, Projection, StoppingRule, StopReason
from .stratification import ChannelStatistics, Stratifier
from .vegas import VegasGrid

log = logging.getLogger("madnis")

KEPT_POINTS = 200_000  # the most points of the latest online batches kept for the integral and the events
KEPT_SHARE = 0.25  # the share of the online batches kept, the latest (at least one)


@dataclass
class TrainingProgress:
    """State after one training step; ``integral``/``rel_error`` are the last online batch's estimate.

    ``steps`` is the budget (an integer or "auto"), ``last`` whether this step is the last one, ``projection`` the
    automatic stopping rule's latest projection (None with a fixed budget).
    """

    step: int
    steps: int | str
    loss: float
    lr: float
    integral: float
    rel_error: float
    active_channels: int
    dropped_channels: list[int]
    n_failed: int
    online: bool = True
    n_skipped: int = 0
    message: str = ""
    last: bool = False
    projection: Projection | None = None


@dataclass
class History:
    """All progress records of a training run, the steps skipped for a non-finite loss or gradient, why
    automatic training stopped (None with a fixed budget), its efficiency checks, the ends of training (before
    their checks) where the sampler took the averaged parameters (:mod:`madnis.averaging`) and the reach checks
    that failed, each with the remedy that training went on with (:mod:`madnis.reach`)."""

    progress: list[TrainingProgress] = field(default_factory=list)
    n_skipped: int = 0
    stop: StopReason | None = None
    checks: list[EfficiencyCheck] = field(default_factory=list)
    averaged: list[AveragedParameters] = field(default_factory=list)
    reach: list[ReachCheck] = field(default_factory=list)  # the failed checks of automatic training

    def extend(self, part: History) -> None:
        """Append a later part of the same training (after an efficiency check)."""
        self.progress += part.progress
        self.averaged += part.averaged
        self.n_skipped, self.stop = part.n_skipped, part.stop

    def __len__(self) -> int:
        return len(self.progress)

    def __getitem__(self, index: int) -> TrainingProgress:
        return self.progress[index]

    @property
    def losses(self) -> list[float]:
        return [p.loss for p in self.progress]


def pretrain_vegas(
    sampler: MultiChannelSampler, integrand: CountingIntegrand, config: TrainingConfig, generator: torch.Generator
) -> torch.Tensor:
    """Fit one VEGAS grid per channel group to |alpha_i value| and start the flow from it (MadNIS Reloaded sec. 2.3).

    Each point of group g is evaluated in a random channel of the group. Returns the grid edges
    (n_groups, ndim, vegas_bins + 1).
    """
    groups = [torch.nonzero(sampler.group_of_channel.cpu() == g)[:, 0] for g in range(sampler.n_groups)]

    def function(r: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        condition = condition.cpu()
        channel = torch.empty_like(condition)
        for g, members in enumerate(groups):
            rows = condition == g
            pick = torch.randint(len(members), (int(rows.sum()),), generator=generator, device=generator.device).cpu()
            channel[rows] = members[pick]
        channel = channel.to(sampler.active.device)
        result = integrand(r, channel)
        with torch.no_grad():
            alpha = sampler.channel_weight(channel, result.alpha_prior, result.features)
        return (alpha.double() * result.value.double()).abs()

    grid = VegasGrid(sampler.flow.dims, sampler.n_groups, config.vegas_bins, device=sampler.active.device)
    grid.train(function, config.vegas_iterations, config.batch_size, generator)
    sampler.flow.init_from_grids(grid.edges)
    return grid.edges


def lr_factor(step: int, config: TrainingConfig) -> float:
    """Learning-rate multiplier at ``step``: cosine or exponential decay to ``lr_final_fraction``, held after the last step."""
    if config.lr_schedule == "constant":
        return 1.0
    t = min(step, config.steps) / max(config.steps, 1)
    final = config.lr_final_fraction
    if config.lr_schedule == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
    return final**t


@dataclass
class OnlineBatch:
    """An online batch with its estimates: I and dI/I, each point's w / p_i (p_i: its channel's share of the
    batch, so the batch is a weighted sample for unweighting) and the seconds drawing it took."""

    batch: BufferedBatch
    integral: float
    rel_error: float
    event_weights: torch.Tensor
    draw_seconds: float
    record: DrawRecord | None


class Trainer:
    """Trains a :class:`MultiChannelSampler` on an integrand; see the module docstring."""

    def __init__(
        self,
        sampler: MultiChannelSampler,
        integrand: CountingIntegrand,
        config: TrainingConfig,
        statistics: ChannelStatistics,
        generator: torch.Generator,
    ):
        self.sampler, self.integrand, self.config, self.statistics = sampler, integrand, config, statistics
        self.generator = generator
        self._optimizer: Adam | None = None  # made on first use (see ``optimizer``)
        self._average: ParameterAverage | None = None  # made with the optimiser (config.average_parameters)
        self._last_parameters: torch.Tensor | None = None  # the last step's, while the sampler has the average
        self._pending_state: dict | None = None
        self.buffer = SampleBuffer(config.buffer_capacity, sampler.n_channels, config.buffer_top_m)
        self.drop_zeros = config.loss in LOSSES_BLIND_TO_ZEROS  # steps train on the points inside the cuts
        self.stratifier = Stratifier(statistics, config.uniform_fraction, config.stratified_warmup_steps)
        self.loss_fn = LOSSES[config.loss]
        self.scale: float | None = None
        self.n_skipped = 0
        self.dropped: list[int] = []
        self.dropping_done = False
        self.online_steps = 0
        self.steps_done = 0  # steps made so far; automatic training goes on from here after an efficiency check
        self.kept: deque[WeightedSample] = deque()  # the latest online batches (module docstring)
        self.batch_integrals: list[float] = []  # the I of each online batch that samples I (madnis.reach)

    def train(
        self, callback: Callable[[TrainingProgress], None] | None = None, stopping: StoppingRule | None = None
    ) -> History:
        """Run ``config.steps`` steps, or with ``stopping`` (``steps = "auto"``) until it says stop."""
        history = History()
        message = ""
        if self.config.train_channel_weights and not self.sampler.train_channel_weights:
            message = "channel weights are not trained: the integrand forbids it (channel_weights_trainable=False); using alpha_prior"
            log.info(message)
        integral = rel_error = math.nan
        projection = None
        self._restore_last_parameters()  # training goes on from the last step's parameters
        steps = range(self.config.steps) if stopping is None else itertools.count(self.steps_done)
        for step in steps:
            online = step % (self.config.buffered_steps + 1) == 0
            if online:
                if step >= self.config.drop_step and not self.dropping_done and self.config.drop_threshold > 0:
                    message = self._drop_channels() or message
                drawn = self._online_batch(self.online_steps)
                batch, integral, rel_error, record = drawn.batch, drawn.integral, drawn.rel_error, drawn.record
                self.online_steps += 1
                if stopping is not None:
                    projection = stopping.observe(
                        step, drawn.event_weights, drawn.draw_seconds, integral, self.kept_points
                    )
            else:
                batch, record = self.buffer.sample(self.generator), None
            loss = self._optimise(batch, record)
            if stopping is not None:
                history.stop = stopping.stop(step)
            progress = TrainingProgress(
                step=step,
                steps=self.config.steps,
                loss=loss,
                lr=self.optimizer.lr,
                integral=integral,
                rel_error=rel_error,
                active_channels=int(self.sampler.active.sum()),
                dropped_channels=list(self.dropped),
                n_failed=self.integrand.n_failed,
                online=online,
                n_skipped=self.n_skipped,
                message=message,
                last=step == self.config.steps - 1 if stopping is None else history.stop is not None,
                projection=projection,
            )
            message = ""
            history.progress.append(progress)
            if callback is not None:
                callback(progress)
            if progress.last:
                break
        self.steps_done = len(history) if stopping is None else self.steps_done + len(history)
        history.n_skipped = self.n_skipped
        averaged = self._take_average()
        if averaged is not None:
            history.averaged.append(averaged)
            log.info(averaged.describe())
        return history

    def _restore_last_parameters(self) -> None:
        if self._last_parameters is not None:
            self.optimizer.flat.copy_(self._last_parameters)
            self._last_parameters = None

    def _take_average(self) -> AveragedParameters | None:
        """Give the sampler the averaged parameters once the average is ready (:mod:`madnis.averaging`), keeping the
        last step's for more training; None before."""
        average = self._average
        if average is None or not average.ready:
            return None
        self._last_parameters = self.optimizer.flat.clone()
        self.optimizer.flat.copy_(average.value)
        return AveragedParameters(self.steps_done, average.decay)

    @property
    def optimizer(self) -> Adam:
        """Adam over the trainable parameters (:mod:`madnis.adam`), made when first needed, with a saved state
        loaded into it."""
        if self._optimizer is None:
            config = self.config
            self._optimizer = Adam(
                self.sampler.trainable_parameters(), config.learning_rate, lambda step: lr_factor(step, config)
            )
            if config.average_parameters:
                self._average = ParameterAverage(self._optimizer.flat)
            if self._pending_state is not None:
                self._optimizer.load_state_dict(self._pending_state["optimizer"], self._pending_state["scheduler"])
                if self._average is not None and self._pending_state.get("average") is not None:
                    self._average.load_state_dict(self._pending_state["average"])
                self._pending_state = None
        return self._optimizer

    def state_dict(self) -> dict:
        """Optimiser, schedule and counters: what continuing the training needs besides the sampler."""
        untouched = self._optimizer is None and self._pending_state is not None
        average = None if self._average is None else self._average.state_dict()
        return {
            "optimizer": self._pending_state["optimizer"] if untouched else self.optimizer.state_dict(),
            "scheduler": self._pending_state["scheduler"] if untouched else self.optimizer.schedule_state_dict(),
            "average": self._pending_state.get("average") if untouched else average,
            "last_parameters": self._last_parameters,  # training goes on from them (the sampler has the average)
            "scale": self.scale,
            "dropped": list(self.dropped),
            "dropping_done": self.dropping_done,
            "online_steps": self.online_steps,
            "n_skipped": self.n_skipped,
        }

    def load_state_dict(self, state: dict) -> None:
        self._pending_state = {
            "optimizer": state["optimizer"],
            "scheduler": state["scheduler"],
            "average": state.get("average"),  # absent from checkpoints before averaging
        }
        self._optimizer, self._average = None, None  # made again when first needed
        self._last_parameters = state.get("last_parameters")
        self.scale, self.dropped, self.dropping_done = state["scale"], list(state["dropped"]), state["dropping_done"]
        self.online_steps, self.n_skipped = state["online_steps"], state["n_skipped"]

    def _online_batch(self, online_step: int) -> OnlineBatch:
        """Draw a stratified batch, update the running channel statistics, store it; return it with its estimates."""
        active = self.sampler.active.cpu()
        counts = self.stratifier.counts(self.config.batch_size, active, online_step)
        channel = torch.repeat_interleave(torch.arange(self.sampler.n_channels), counts)
        start = time.perf_counter()
        draw = self.sampler.draw(self.integrand, channel, self.generator, record=True)
        draw_seconds = time.perf_counter() - start
        accumulator = ChannelAccumulator.of(self.sampler.n_channels, draw.channel, draw.weight, draw.ok, tails=False)
        mean, variance = accumulator.channel_estimates()
        measured = accumulator.n >= 2
        self.statistics.update(mean, torch.sqrt(variance * accumulator.n), measured)
        integral = float(mean.sum())
        if self.scale is None:
            self.scale = abs(integral) if integral != 0 and math.isfinite(integral) else 1.0
        rel_error = math.sqrt(float(variance.sum())) / abs(integral) if integral != 0 else math.inf
        value = torch.where(draw.ok, draw.value.double(), torch.zeros_like(draw.value, dtype=torch.float64))
        batch = BufferedBatch(draw.r, value, draw.q_sample, draw.channel, draw.alpha_prior, draw.features)
        record = draw.record
        if self.drop_zeros:  # this step and the buffered ones train on the points inside the cuts (madnis.buffer)
            batch, keep = batch.without_zeros(self.sampler.n_channels)
            record = None if record is None else record.take(keep)
        if self.config.buffered_steps > 0:  # nothing reads the buffer otherwise
            self.buffer.store(batch)
        share = (counts.double() / counts.sum()).to(draw.weight.device)
        weights = draw.weight / share[draw.channel]
        if bool((counts[active] > 0).all()):  # a sample of I only if every channel has points
            sample = WeightedSample(draw.r, draw.channel, weights, draw.momenta, draw.ok, share[draw.channel])
            self._keep(sample, online_step + 1)
            self.batch_integrals.append(integral)
        return OnlineBatch(batch, integral, rel_error, weights, draw_seconds, record)

    def _keep(self, sample: WeightedSample, online_batches: int) -> None:
        """Keep the batch; drop the oldest kept ones beyond the latest :data:`KEPT_SHARE` of the ``online_batches`` so
        far or beyond :data:`KEPT_POINTS` points."""
        self.kept.append(sample)
        while len(self.kept) > 1 and (
            len(self.kept) > int(KEPT_SHARE * online_batches) or self.kept_points > KEPT_POINTS
        ):
            self.kept.popleft()

    @property
    def kept_points(self) -> int:
        return sum(len(s.weight) for s in self.kept)

    def kept_batches(self) -> list[WeightedSample]:
        """The kept online batches, each a weighted sample with its own p_i (each a sampler's only stage of the cross
        section: :class:`madnis.integration.SamplerPools`), once; empty once taken."""
        batches, self.kept = list(self.kept), deque()
        return batches

    def _optimise(self, batch: BufferedBatch, record: DrawRecord | None = None) -> float:
        """One optimiser step on a batch; skipped (and counted) if the loss or the gradient is not finite.
        ``record``: the flow's splines from drawing the batch (an online batch), reused by log q."""
        self.optimizer.zero_grad()
        q_model = torch.exp(self.sampler.log_q(batch.r, batch.channel, record).double())
        alpha = self.sampler.channel_weight(batch.channel, batch.alpha_prior, batch.features).double()
        loss = self.loss_fn(
            batch.channel,
            batch.value / self.scale,
            q_model,
            batch.q_sample.double(),
            alpha,
            self.sampler.n_channels,
            batch.zero_counts,
        )
        if not torch.isfinite(loss):
            return self._skip(float(loss.detach()))
        loss.backward()
        if not math.isfinite(self.optimizer.step(self.config.grad_clip or math.inf)):  # clipped, then updated
            return self._skip(float(loss.detach()))
        self.optimizer.advance_schedule()
        if self._average is not None:
            self._average.update()
        return float(loss.detach())

    def _skip(self, loss: float) -> float:
        self.optimizer.zero_grad()
        self.n_skipped += 1
        log.warning("skipped a training step with a non-finite loss or gradient (%d so far)", self.n_skipped)
        self.optimizer.advance_schedule()
        return loss

    def _drop_channels(self) -> str:
        self.dropping_done = True
        drop = channels_to_drop(self.statistics.integral, self.sampler.active.cpu(), self.config.drop_threshold)
        self.dropped = torch.nonzero(drop)[:, 0].tolist()
        if not self.dropped:
            return ""
        self.sampler.active[drop.to(self.sampler.active.device)] = False
        self.kept.clear()  # the active channels change here
        message = f"dropped {len(self.dropped)} channel(s) below {self.config.drop_threshold:g} of the integral: {self.dropped}"
        log.info(message)
        return message
