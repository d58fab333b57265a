"""Steps 2 and 3, integrate and unweight: the fixed trained sampler's points serve the integral and the events.

As MadEvent's refine points serve both, the final integration's points are the first weighted sample for
unweighting; weighted batches are then drawn until exactly ``n_events`` points are accepted. Every point drawn
also enters the quoted cross section, and so do the points of every earlier sampler: those of an efficiency check
that resumed training and the later online batches of training (:mod:`madnis.training`), which thus count towards
``integration_points`` and unweight into events. Each of them is an importance sample of I with its own channel
weights (learned ones change from batch to batch), so it pools with the others as a whole, by its size
(:class:`madnis.integration.SamplerPools`), never per channel with points of other channel weights.

Each batch is a *stage* of :class:`madnis.integration.StagePool`: its size and channel allocation were fixed before it
was drawn, and sigma pools the stages by their sizes, not per channel (a later allocation by sigma_i or w_max_i would
dilute the channels whose earlier points were high). The points drawn for events after the integration (top-ups here,
a generation chunk's) follow an :class:`EventPlan` fixed before any of them is drawn: channel probabilities and one
w_max from the integration. Re-derived from the points drawn since (MadEvent's rule on a chunk's own points, shares
towards its own w_max_i), an outlier raised w_max, so the chunk drew more points, which diluted it: sigma came out low
(heavy-tailed toy, ``benchmarks/results/sigma_bias.md``: -4.9 +- 0.2 permil per chunk of 300 events against
+0.3 +- 0.3 with a fixed plan; ``g g > w+ d u~ g``: one chunk met a weight 17x its w_max and drew 671k points instead
of ~50k). An event above the plan's w_max is kept with weight W / w_max, as any overweight event.

Unweighting: a point of channel i with weight w in its channel carries W = w / p_i, p_i the channel's share of its
batch (each batch's n_i are fixed before it is drawn, so W is unbiased; with the plan's points, the plan's p_i). The
w_max of the points of one sampler (the training batches count as one) is MadEvent's of their W
(:func:`madnis.unweighting.max_weight`, share ``training.max_overweight``): each batch accepts its points in proportion
to f / w_max, so the accepted points of each sampler follow f and so does their union, while the earlier samplers'
heavier tails do not set the w_max of the final one's points (``g g > w+ d u~ g``, a channel part checked at 0.79 %
and then 2.71 % on 100k points each: 1261 events from the 200k points against one w_max, 1943 with one each). For the
plan's points the w_max is the plan's.
Every point gets its uniform number u once; of more than ``n_events`` accepted points a uniformly random subset is
kept (a fixed random priority per point), so the events' channel mix is not tilted towards the first batches. The
diagnostics (prior channel shares, the observable of the weighted points and of the events) are accumulated from the
points drawn, without integrand calls of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from madnis import IntegrationResult, MadNIS, WeightedSample
from madnis.integration import ChannelAccumulator, SamplerPools
from madnis.reach import FLAT_SHARE, FLAT_SHARE_ON_FAILURE, PRIOR_CHANNEL_WEIGHTS
from madnis.sampler import channel_probabilities, inside_cuts
from madnis.unweighting import channel_max_weights, max_weight, overweight_share, unweighting_efficiency

from .source import UNWEIGHTING, ProcessSource, RunSettings, stream_seed

TRAINING_SAMPLE = -1  # the sampler label of the kept training batches (WeightedPoints.add)


@dataclass(frozen=True)
class EventPlan:
    """How the points drawn for events after the integration are drawn and unweighted, fixed before any is drawn:
    channel i with p_i ∝ ``share`` (the w_max_i of the final sampler's integration points, chosen together by
    :func:`madnis.unweighting.channel_max_weights`), mixed as :func:`madnis.sampler.channel_probabilities` mixes it,
    and one ``w_max`` = max_i w_max_i / p_i for their W = w / p_i, so every channel reaches it where it reaches its
    own w_max_i (module docstring: why never re-derived from these points)."""

    share: torch.Tensor
    w_max: float
    efficiency: float  # sum_i |I_i| / w_max: the share of these points hit-or-miss is expected to keep

    @classmethod
    def of(cls, madnis: MadNIS) -> EventPlan:
        """The plan of the integration ``madnis.last_result`` for its sampler's active channels."""
        integral, max_weights = madnis.last_result.channel_tensors()
        share = max_weights if bool((max_weights > 0).any()) else integral.abs()
        p = channel_probabilities(share, madnis.sampler.active.cpu())
        own = torch.where(max_weights > 0, max_weights, integral.abs())  # a channel without a w_max: its mean
        w_max = float(torch.where(p > 0, own / p.clamp_min(1e-300), torch.zeros_like(p)).max())
        efficiency = float(integral.abs().sum()) / w_max if w_max > 0 else 0.0
        return cls(share, w_max, efficiency)

    @classmethod
    def for_precision(cls, spread: torch.Tensor) -> EventPlan:
        """Points for sigma alone (no events: ``w_max`` infinite): channel i with p_i ∝ its spread per point
        ``spread[i]`` (:func:`channel_spreads` of the final sampler's points), mixed as
        :func:`madnis.sampler.channel_probabilities` mixes it, the allocation of least variance sum_i sigma_i^2 / p_i
        per point (stratified sampling) where the events' plan allocates by w_max_i."""
        return cls(spread.double(), math.inf, 0.0)

    def draw(self, madnis: MadNIS, n: int, seed: int) -> WeightedSample:
        """``n`` weighted points of the fixed sampler, channels drawn with the plan's p_i."""
        return madnis.sample_weighted(n, seed=seed, share=self.share)


def channel_spreads(result: IntegrationResult) -> torch.Tensor:
    """(n_channels,) each channel's spread per point in ``result``, sigma_i = dI_i sqrt(n_i)."""
    return torch.tensor([c.error * math.sqrt(c.n_points) for c in result.channels], dtype=torch.float64)


class WeightedPoints:
    """Every weighted point drawn for one source: pooled sigma, unweighting inputs, diagnostics. Each batch is
    labelled with its sampler (the training steps it had made): the final sampler's, or an earlier one's whose
    efficiency check resumed training; a batch drawn by an :class:`EventPlan` carries the plan's w_max."""

    def __init__(self, madnis: MadNIS, source: ProcessSource):
        """Only what unweighting and the diagnostics need is kept of each point (not its momenta or alpha)."""
        n_channels = source.integrand.n_channels
        self.group_of_channel = madnis.sampler.group_of_channel.cpu()
        self.stages = SamplerPools(n_channels)  # every batch but the plan's, each a stage
        self.planned = ChannelAccumulator(n_channels)  # the plan's batches: one stage (one allocation)
        self.observable = source.observable
        self.r: list[torch.Tensor] = []
        self.channel: list[torch.Tensor] = []
        self.weight: list[torch.Tensor] = []  # W = w / p_i with p_i the channel probability of the point's batch
        self.within: list[torch.Tensor] = []  # w: the weight in its channel (mean I_i)
        self.sampler: list[int] = []  # each batch's sampler: the training steps it had made
        self.plan_w_max: list[float | None] = []  # each batch's fixed w_max (an EventPlan's), None: its sampler's
        self.observable_values: list[np.ndarray] = []
        self.prior_weighted = torch.zeros(n_channels, dtype=torch.float64)  # sum w alpha^prior
        self.prior_total = 0.0
        self.integration_batches = 0  # the first batches: the final integration's points
        self.final_sampler = madnis.sampler_step  # the label of the final sampler's batches

    def add(self, sample: WeightedSample, sampler: int, plan: EventPlan | None = None) -> None:
        """A batch drawn by the sampler that had made ``sampler`` training steps (with ``plan``: by that plan)."""
        weight = sample.weight.double().cpu()
        channel = sample.channel.cpu()
        within = weight * sample.channel_probability.double().cpu()
        if plan is None:
            stage = ChannelAccumulator.of(len(self.prior_weighted), channel, within, sample.ok.cpu())
            self.stages.add(stage, final=sampler == self.final_sampler)
        else:
            self.planned.add(channel, within, sample.ok.cpu())
        self.r.append(sample.r.cpu())
        self.channel.append(channel)
        self.weight.append(weight)
        self.within.append(within)
        self.sampler.append(sampler)
        self.plan_w_max.append(None if plan is None else plan.w_max)
        if self.observable is not None and sample.momenta is not None:
            self.observable_values.append(self.observable(sample.momenta.double().cpu()))
        if sample.alpha_prior is not None:
            self.prior_weighted += (weight[:, None] * sample.alpha_prior.double().cpu()).sum(0)
            self.prior_total += float(weight.sum())

    def __len__(self) -> int:
        return sum(len(w) for w in self.weight)

    @property
    def n_inside(self) -> int:
        """The points inside the cuts (weight != 0), those that MadEvent's ``results.dat`` counts as its points."""
        return sum(inside_cuts(w) for w in self.weight)

    @property
    def cross_section(self) -> SamplerPools:
        """Every point so far, stage by stage (the plan's batches one stage of the final sampler)."""
        planned = SamplerPools(len(self.prior_weighted))
        planned.add(self.planned, final=True)
        return self.stages.merge(planned)

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
        """(n,) which points the final sampler drew (all of them if it drew none, which :func:`integrate` never
        lets happen). The last batch need not be its: the kept training batches come last when they and the final
        sampler's check fill ``integration_points``."""
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
        return self._per_point(self.sampler, torch.long)

    def _per_point(self, values: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.cat([torch.full((len(w),), value, dtype=dtype) for w, value in zip(self.weight, values)])

    def unweighting_weights(self, max_overweight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """W = w / p_i of every point (p_i its batch's channel probability) and each point's w_max: for a plan's
        points the plan's, for the others MadEvent's w_max of their sampler's W with share ``max_overweight`` (inf
        where all its W are 0)."""
        sampler = self.samplers()
        planned = self._per_point([w is not None for w in self.plan_w_max], torch.bool)
        weights = torch.cat(self.weight)
        thresholds = self._per_point([math.inf if w is None else w for w in self.plan_w_max], torch.float64)
        for label in torch.unique(sampler[~planned]).tolist():
            mine = (sampler == label) & ~planned
            magnitude = weights[mine].abs()
            thresholds[mine] = max_weight(magnitude, max_overweight) if bool((magnitude > 0).any()) else math.inf
        return weights, thresholds

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
    weighted_inside: int  # those inside the cuts (weight != 0)
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
    training, of the fixed sampler, and any that resumed it, of the sampler then; each batch a stage of sigma)
    and its later online batches (:meth:`madnis.MadNIS.take_training_batches`) count
    towards them, and only the rest is drawn; but where no check drew from the final sampler (a fixed budget,
    ``madnis_steps = N``) it draws ``n_points`` itself and the other points come on top: its points' w_max plans the
    generation (:meth:`WeightedPoints.integration_result`), and the later batches, drawn by earlier samplers with
    heavier tails, would otherwise stand in for it (``g g > w+ d u~ g`` at 1000 fixed steps: 62 later batches filled
    a part's 44.5k points, the final sampler drew none, and the plan's w_max of 17,370 pb from those batches made
    its generation chunks unweight at 1.15 % where 500 fixed steps, whose final sampler drew 13k points, gave
    2.7 %, benchmarks/results/stop41_measurements.md).

    The integral then meets training's first online batches (:mod:`madnis.reach`): the line says whether the
    sampler still draws what training drew (where it no longer did, automatic training has taken MadEvent's channel
    weights, then a flat share, and trained on, :meth:`madnis.MadNIS.train`; a fixed budget gets the advice)."""
    n_points = settings.integration_points if n_points is None else n_points
    points = WeightedPoints(madnis, source)
    reused = madnis.take_check_samples()
    for sampler, sample in reused:
        points.add(sample, sampler)
    final_checked = any(sampler == madnis.sampler_step for sampler, _ in reused)
    training = madnis.take_training_batches()
    for batch in training:
        points.add(batch, TRAINING_SAMPLE)
    fresh = n_points - len(points) if final_checked else n_points
    if fresh >= 2:
        points.add(madnis.integrate_sample(fresh, seed=seed)[1], madnis.sampler_step)
    points.integration_batches = len(points.weight)
    result = points.integration_result(settings.training.max_overweight)
    madnis.last_result = result
    checked = sum(len(sample.weight) for _, sample in reused)
    from_check = f", {checked} of them from {len(reused)} efficiency check(s)" if reused else ""
    trained = sum(len(batch.weight) for batch in training)
    from_training = f", {trained} from {len(training)} later training batches" if training else ""
    by_share = ""
    if n_points != settings.integration_points:
        by_share = f" (asked {n_points} by its share of sigma of {settings.integration_points} per source)"
    log(f"  [{source.name}] integration: {describe_sigma(result)}{from_check}{from_training}{by_share}")
    reach = madnis.reach_check(result)
    if reach is not None:
        change = {  # the run_card entry of the next remedy; past the last, the learning rate
            PRIOR_CHANNEL_WEIGHTS: "madnis_train_channel_weights = False",
            FLAT_SHARE: f"madnis_defensive_fraction = {FLAT_SHARE_ON_FAILURE:g}",
        }.get(madnis.next_reach_remedy, "a lower madnis_learning_rate")
        remedy = f"the cross section may be low: launch again with {change}"
        log(f"  [{source.name}] {replace(reach, remedy=remedy).describe()}")
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


def draw_for_precision(
    madnis: MadNIS, points: WeightedPoints, plan: EventPlan, n_points: int, seed: int, batch: int
) -> None:
    """``n_points`` more weighted points by ``plan`` into ``points`` (batches of at most ``batch``, each seeded
    ``seed`` + the points drawn before it): points for sigma alone, the run's precision target
    (:func:`.events.precision_points`), one stage of the final sampler (the plan's allocation)."""
    drawn = 0
    while drawn < n_points:
        size = max(2, min(batch, n_points - drawn))
        points.add(plan.draw(madnis, size, seed + drawn), madnis.sampler_step, plan)
        drawn += size


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
    plan: EventPlan | None = None,
) -> Unweighted:
    """Step 3: accept exactly ``n_events`` of ``points`` and of batches drawn with ``seed`` by ``plan`` (None: the
    plan of ``madnis.last_result``, fixed here before any batch is drawn), which join them.

    With ``draw_more = False`` no batch is drawn: at most ``n_events`` of ``points`` alone are accepted. Any
    ``n`` of them with the lowest priorities are exactly the events a call for ``n`` events would accept.
    ``stop`` is asked before each batch drawn; when it says so, :class:`UnweightingStopped` is raised."""
    plan = EventPlan.of(madnis) if plan is None and draw_more else plan
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
        size = top_up_size(n_events - len(accepted), len(accepted) / len(weights), settings.weighted_batch)
        points.add(plan.draw(madnis, size, seed + len(weights)), madnis.sampler_step, plan)
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
        weighted_inside=points.n_inside,
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
