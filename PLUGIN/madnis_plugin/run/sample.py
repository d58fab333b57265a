"""Steps 2 and 3, integrate and unweight: the fixed trained sampler's points serve the integral and the events.

As MadEvent's refine points serve both, the final integration's points are the first weighted sample for
unweighting; weighted batches are then drawn until exactly ``n_events`` points are accepted. Every point drawn
from the fixed sampler also enters the quoted cross section: per channel i all its points are draws of the
same q_i whatever the channel probabilities of their batch, so I = sum_i mean_i(w) over all of them with
dI^2 = sum_i Var_i(w) / n_i (the integration's own accumulator). With fixed channel weights (MadEvent's
alpha^prior) the points of every earlier sampler pool with them the same way, for a point's w estimates the same
I_i whatever density drew it: those of an efficiency check that resumed training and the later half of the
training's online batches (:mod:`madnis.training`), which thus count towards ``integration_points`` and unweight
into events. With learned channel weights only the final sampler's points are drawn for sigma and events.

Unweighting treats all points of one sampler as one sample: a point of channel i with weight w in its channel
carries W = w / P_i, P_i = n_i / n its channel's share of that sampler's points (unbiased whatever the batches'
channel probabilities: each batch's n_i are fixed before it is drawn), and is accepted against MadEvent's w_max of
that sampler's W (:func:`madnis.unweighting.max_weight`, share ``training.max_overweight``; every point gets its
uniform number u once, overweight events keep weight W / w_max). The points of an efficiency check that resumed
training come from an earlier sampler, the kept training batches from many (one sample: each batch's channel counts
were fixed before it was drawn, so W = w / P_i with P_i over the whole sample stays unbiased): each is a sample of
its own with its own w_max, so the accepted points of each sample follow f and so does their union, while the
earlier samplers' heavier tails do not set the w_max of the final one's points (``g g > w+ d u~ g``, a channel part checked at 0.79 % and then 2.71 % on 100k
points each: 1261 events from the 200k points against one w_max, 1943 with one each). The efficiency is highest
when n_i ∝ w_max_i, each channel's own maximum (:mod:`madnis.unweighting`), so each new batch of the final
sampler fills its channels up towards that allocation. Of more than ``n_events`` accepted points a uniformly random subset is kept (a fixed random
priority per point), so the events' channel mix is not tilted towards the first batches. The diagnostics
(prior channel shares, the observable of the weighted points and of the events) are accumulated from the
points drawn, without integrand calls of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from madnis import IntegrationResult, MadNIS, WeightedSample
from madnis.integration import ChannelAccumulator
from madnis.unweighting import (
    channel_max_weights,
    max_weight,
    multichannel_efficiency,
    overweight_share,
    unweighting_efficiency,
)

from .source import UNWEIGHTING, ProcessSource, RunSettings, stream_seed

TRAINING_SAMPLE = -1  # the sampler label of the kept training batches (WeightedPoints.add)


class WeightedPoints:
    """Every weighted point drawn for one source: pooled sigma, unweighting inputs, diagnostics. Each batch is
    labelled with its sampler (the training steps it had made): the final sampler's, or an earlier one's whose
    efficiency check resumed training."""

    def __init__(self, madnis: MadNIS, source: ProcessSource):
        """Only what unweighting and the diagnostics need is kept of each point (not its momenta or alpha)."""
        self.group_of_channel = madnis.sampler.group_of_channel.cpu()
        self.cross_section = ChannelAccumulator(source.integrand.n_channels)
        self.observable = source.observable
        self.r: list[torch.Tensor] = []
        self.channel: list[torch.Tensor] = []
        self.weight: list[torch.Tensor] = []  # w / p_i with p_i the channel probability of the point's batch
        self.within: list[torch.Tensor] = []  # w: the weight in its channel (mean I_i)
        self.sampler: list[int] = []  # each batch's sampler: the training steps it had made
        self.observable_values: list[np.ndarray] = []
        self.prior_weighted = torch.zeros(source.integrand.n_channels, dtype=torch.float64)  # sum w alpha^prior
        self.prior_total = 0.0
        self.integration_batches = 0  # the first batches: the final integration's points
        self.final_sampler = madnis.sampler_step  # the label of the final sampler's batches

    def add(self, sample: WeightedSample, sampler: int) -> None:
        """A batch drawn by the sampler that had made ``sampler`` training steps."""
        weight = sample.weight.double().cpu()
        channel = sample.channel.cpu()
        within = weight * sample.channel_probability.double().cpu()
        self.cross_section.add(channel, within, sample.ok.cpu())
        self.r.append(sample.r.cpu())
        self.channel.append(channel)
        self.weight.append(weight)
        self.within.append(within)
        self.sampler.append(sampler)
        if self.observable is not None and sample.momenta is not None:
            self.observable_values.append(self.observable(sample.momenta.double().cpu()))
        if sample.alpha_prior is not None:
            self.prior_weighted += (weight[:, None] * sample.alpha_prior.double().cpu()).sum(0)
            self.prior_total += float(weight.sum())

    def __len__(self) -> int:
        return sum(len(w) for w in self.weight)

    def integration_result(self, max_overweight: float) -> IntegrationResult:
        """sigma of all points so far, each channel with the w_max (MadEvent's rule) of the final sampler's points:
        the generation draws from it, and the earlier samplers' heavier tails would understate its efficiency."""
        result = self.cross_section.result(self.group_of_channel)
        final = self.final_points()
        max_weights = channel_max_weights(
            torch.cat(self.within)[final], torch.cat(self.channel)[final], len(self.prior_weighted), max_overweight
        )
        for contribution, w_max in zip(result.channels, max_weights.tolist()):
            contribution.max_weight = w_max
        return result

    def final_points(self) -> torch.Tensor:
        """(n,) which points the final sampler drew (all of them if it drew none: every point came from the
        training's later batches or resumed checks). The last batch need not be its: the kept training batches can
        come last when they and the checks fill ``integration_points``."""
        final = self.samplers() == self.final_sampler
        return final if bool(final.any()) else torch.ones_like(final)

    def final_integration(self) -> list[int]:
        """The batches of the final integration that the final sampler drew (the plots' weighted sample); a
        generation chunk, which integrates nothing, gives its first batch."""
        return [i for i in range(self.first_batches) if self.sampler[i] == self.final_sampler] or [0]

    def integration_weights(self) -> torch.Tensor:
        """W = w / p_i of the :meth:`final_integration` points (the weight plot's sample)."""
        return torch.cat([self.weight[i] for i in self.final_integration()])

    @property
    def first_batches(self) -> int:
        return max(self.integration_batches, 1)

    def samplers(self) -> torch.Tensor:
        """(n,) each point's sampler label (see :meth:`add`)."""
        return torch.cat(
            [torch.full((len(w),), label, dtype=torch.long) for w, label in zip(self.weight, self.sampler)]
        )

    def unweighting_weights(self, max_overweight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """W of every point, w / P_i with P_i its channel's share of its sampler's points, and each point's w_max:
        MadEvent's of its sampler's W with share ``max_overweight`` (module docstring; inf where all its W are 0)."""
        channel, within, sampler = torch.cat(self.channel), torch.cat(self.within), self.samplers()
        weights = torch.empty_like(within)
        thresholds = torch.empty_like(within)
        for label in torch.unique(sampler).tolist():
            mine = sampler == label
            share = torch.bincount(channel[mine], minlength=len(self.prior_weighted)).double() / int(mine.sum())
            weights[mine] = within[mine] / share[channel[mine]]
            magnitude = weights[mine].abs()
            thresholds[mine] = max_weight(magnitude, max_overweight) if bool((magnitude > 0).any()) else math.inf
        return weights, thresholds

    def top_up_shares(self, n_events: int, max_overweight: float) -> torch.Tensor:
        """Channel shares of the next batch: towards n_i ∝ w_max_i for a sample of the size ``n_events`` needs,
        from the final sampler's points (it draws the next)."""
        final = self.final_points()
        channel, within = torch.cat(self.channel)[final], torch.cat(self.within)[final]
        n_channels = len(self.prior_weighted)
        max_weights = channel_max_weights(within, channel, n_channels, max_overweight)
        integrals, _ = self.cross_section.channel_estimates()
        efficiency = multichannel_efficiency(integrals, max_weights)
        if efficiency <= 0:
            return max_weights
        target = n_events / efficiency * max_weights / max_weights.sum()
        deficit = (target - torch.bincount(channel, minlength=n_channels).double()).clamp_min(0.0)
        return deficit if deficit.sum() > 0 else max_weights

    def prior_fractions(self) -> np.ndarray:
        """Channel shares sum_i E[w alpha_i^prior] / E[w]: what the prior channel weights would give."""
        n = len(self.prior_weighted)
        if self.prior_total <= 0:
            return np.full(n, 1.0 / n)
        return (self.prior_weighted / self.prior_total).numpy()


@dataclass
class Unweighted:
    """Step 3's result: the accepted events and what all weighted points drawn say."""

    r: torch.Tensor  # the accepted points, (n_events, ndim)
    channel: torch.Tensor
    relative_weight: np.ndarray  # signed event weight / w_max: 1, or |w| / w_max > 1 for an overweight event
    cross_section: IntegrationResult  # pooled over every weighted point drawn (integration + unweighting)
    weighted_points: int
    w_max: float
    efficiency: float
    overweight_share: float  # share of sigma above w_max
    n_overweight: int
    max_event_weight_ratio: float  # largest event weight / mean event weight
    prior_fractions: np.ndarray
    sample_weights: np.ndarray  # the first weighted sample's (the integration's), for the weight plot
    sample_observable: np.ndarray | None
    event_observable: np.ndarray | None
    priority: np.ndarray  # each event's random priority: the n of lowest priority are what a share of n keeps

    def in_priority_order(self) -> Unweighted:
        """The same events sorted by priority: any first n of them are what a share of n keeps."""
        order = np.argsort(self.priority, kind="stable")
        index = torch.from_numpy(order)
        return replace(
            self,
            r=self.r[index],
            channel=self.channel[index],
            relative_weight=self.relative_weight[order],
            priority=self.priority[order],
            event_observable=None if self.event_observable is None else self.event_observable[order],
        )


def describe_sigma(result: IntegrationResult) -> str:
    """How the run prints a cross section: the error includes the weight-tail part (:mod:`madnis.tails`)."""
    return (
        f"sigma = {result.integral:.6g} +- {result.error:.3g} pb (weight-tail part {result.tail_error:.2g}), "
        f"{result.n_points} points"
    )


def integrate(
    madnis: MadNIS,
    source: ProcessSource,
    settings: RunSettings,
    seed: int,
    log: Callable[[str], None],
    n_points: int | None = None,
) -> tuple[IntegrationResult, WeightedPoints]:
    """Step 2: the final integration of ``n_points`` points (None: ``settings.integration_points``; with several
    sources, :func:`.events.integration_points`), and its points as the first weighted points for unweighting.

    The points of the training's efficiency checks (:meth:`madnis.MadNIS.take_check_samples`: the one that ended
    training, of the fixed sampler, and any that resumed it, of the sampler then; pooled per channel, see there)
    and its later online batches (:meth:`madnis.MadNIS.take_training_sample`, with fixed channel weights) count
    towards them, and only the rest is drawn."""
    n_points = settings.integration_points if n_points is None else n_points
    points = WeightedPoints(madnis, source)
    reused = madnis.take_check_samples()
    for sampler, sample in reused:
        points.add(sample, sampler)
    training = madnis.take_training_sample()
    if training is not None:
        points.add(training, TRAINING_SAMPLE)
    fresh = n_points - len(points)
    if fresh >= 2:
        points.add(madnis.integrate_sample(fresh, seed=seed)[1], madnis.sampler_step)
    points.integration_batches = len(points.weight)
    result = points.integration_result(settings.training.max_overweight)
    madnis.last_result = result
    checked = sum(len(sample.weight) for _, sample in reused)
    from_check = f", {checked} of them from {len(reused)} efficiency check(s)" if reused else ""
    from_training = f", {len(training.weight)} from the later training batches" if training is not None else ""
    by_share = ""
    if n_points != settings.integration_points:
        by_share = f" (asked {n_points} by its share of sigma of {settings.integration_points} per source)"
    log(f"  [{source.name}] integration: {describe_sigma(result)}{from_check}{from_training}{by_share}")
    return result, points


TOP_UP_MARGIN = 1.1  # a top-up draws this many times the points its missing events need at the rate so far
MIN_TOP_UP = 1000  # weighted points a top-up draws at least


def top_up_size(missing: int, rate: float, batch: int) -> int:
    """Weighted points of the next top-up: the ``missing`` events at the acceptance ``rate`` of the points so far,
    with :data:`TOP_UP_MARGIN`, between :data:`MIN_TOP_UP` and ``batch``. Whole batches overshot: a W+2j chunk of
    1000 events at 2.3 % needs ~44k points and drew 60k in batches of 20k, so a quarter of its points (and events)
    were not needed."""
    if rate <= 0:
        return batch
    return int(min(batch, max(MIN_TOP_UP, math.ceil(TOP_UP_MARGIN * missing / rate))))


class UnweightingStopped(Exception):
    """:func:`unweight` was asked to stop (its ``stop`` said so) before it had its events."""


def unweight(
    madnis: MadNIS,
    points: WeightedPoints,
    n_events: int,
    source: ProcessSource,
    settings: RunSettings,
    seed: int,
    log: Callable[[str], None],
    draw_more: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Unweighted:
    """Step 3: accept exactly ``n_events`` of ``points`` and of batches drawn with ``seed``, which join them.

    With ``draw_more = False`` no batch is drawn: at most ``n_events`` of ``points`` alone are accepted. Any
    ``n`` of them with the lowest priorities are exactly the events a call for ``n`` events would accept.
    ``stop`` is asked before each batch drawn; when it says so, :class:`UnweightingStopped` is raised."""
    generator = torch.Generator().manual_seed(stream_seed(seed, 0, UNWEIGHTING))  # u independent of the points
    uniform = torch.zeros(0, dtype=torch.float64)
    priority = torch.zeros(0, dtype=torch.float64)
    while True:
        weights, w_max = points.unweighting_weights(settings.training.max_overweight)
        fresh = torch.rand(2, len(weights) - len(uniform), generator=generator, dtype=torch.float64)
        uniform, priority = torch.cat([uniform, fresh[0]]), torch.cat([priority, fresh[1]])  # drawn once per point
        if n_events == 0:
            accepted = torch.zeros(0, dtype=torch.long)
            break
        if not (weights.abs() > 0).any():
            raise RuntimeError(f"{source.name}: no positive weight in {len(weights)} points")
        accepted = torch.nonzero(uniform * w_max < weights.abs())[:, 0]
        if len(accepted) >= n_events or not draw_more:
            break
        if len(weights) >= settings.max_weighted_points:
            raise RuntimeError(
                f"{source.name}: only {len(accepted)} of {n_events} events after {len(weights)} weighted points "
                f"(unweighting efficiency {len(accepted) / len(weights):.2e}); train longer or ask fewer events"
            )
        if stop is not None and stop():
            raise UnweightingStopped(f"{source.name}: stopped after {len(weights)} weighted points")
        share = points.top_up_shares(n_events, settings.training.max_overweight)
        size = top_up_size(n_events - len(accepted), len(accepted) / len(weights), settings.weighted_batch)
        sample = madnis.sample_weighted(size, seed=seed + len(weights), share=share)
        points.add(sample, madnis.sampler_step)
    index = accepted[torch.argsort(priority[accepted])[:n_events]].sort().values
    relative = (torch.sign(weights[index]) * weights[index].abs().clamp(min=w_max[index]) / w_max[index]).numpy()
    final = points.final_points()
    final_w_max = float(w_max[final][-1]) if n_events else 0.0  # the final sampler's
    observable = np.concatenate(points.observable_values) if points.observable_values else None
    out = Unweighted(
        r=torch.cat(points.r)[index],
        channel=torch.cat(points.channel)[index],
        relative_weight=relative,
        cross_section=points.cross_section.result(points.group_of_channel),
        weighted_points=len(weights),
        w_max=final_w_max,
        efficiency=unweighting_efficiency(weights, w_max) if n_events else 0.0,
        overweight_share=overweight_share(weights, w_max) if n_events else 0.0,
        n_overweight=int((weights[index].abs() > w_max[index]).sum()),
        max_event_weight_ratio=float(np.abs(relative).max() / np.abs(relative).mean()) if len(relative) else 0.0,
        prior_fractions=points.prior_fractions(),
        sample_weights=points.integration_weights().numpy(),
        sample_observable=None
        if observable is None
        else np.concatenate([points.observable_values[i] for i in points.final_integration()]),
        event_observable=None if observable is None else observable[index.numpy()],
        priority=priority[index].numpy(),
    )
    sigma = out.cross_section
    earlier_points = int((~final).sum())
    earlier = f"; {earlier_points} points of earlier samplers against their own w_max" if earlier_points else ""
    log(
        f"  [{source.name}] {len(index)} events from {len(weights)} weighted points: efficiency "
        f"{100 * out.efficiency:.2f}% (MadEvent's rule: w_max {final_w_max:.4g} pb, "
        f"{100 * out.overweight_share:.3f}% of sigma above it{earlier}), {out.n_overweight} overweight events kept with weight w/w_max, "
        f"largest event weight / mean {out.max_event_weight_ratio:.3g}; "
        f"{describe_sigma(sigma)} (all weighted points)"
    )
    return out
