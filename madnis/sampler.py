"""The multi-channel sampler: one flow per channel group, channel weights, active channels (MadNIS sec. 2).

Channel i draws r ~ q_{g(i)}(r) from the flow conditioned on its group g(i) (symmetric channels share a
flow), the integrand returns ``value = f(x(r)) J_i(r)`` and ``alpha_prior``, and the point's weight is
``w = alpha_i(x) value / q_{g(i)}(r)`` with alpha from the channel-weight net (or the prior when channel
weights are not trained), restricted to the active channels. Points are never redrawn: a point failing cuts
is a valid sample of value 0, so sampling cannot loop. :class:`CountingIntegrand` counts integrand calls
(benchmarks compare at equal call budgets) and failed points.

Defensive mixture (Hesterberg 1995): a share ``eps`` (``config.defensive_share``) of every channel's points is drawn
flat in r (MadEvent's mapping alone), so each channel's density is ``q = (1 - eps) q_flow + eps`` everywhere: in
sampling, in the weights, and in the training loss, which therefore trains the flow as part of the mixture. Why: a
trained ``g g > w+ d u~ g`` sampler's largest weights came from regions where the flow had shrunk its density to
~1e-3 while f J stayed ~100 pb (``benchmarks/results/defensive_mixture.md``); the flat share bounds every weight by
``alpha value / eps``, and adds at most ``(sigma^2 + I^2) eps / (1 - eps)`` to a channel's variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from .config import TrainingConfig
from .cwnet import ChannelWeightNet
from .dropping import restrict_channel_weights
from .flow import Flow
from .integrand import Integrand, IntegrandResult
from .splines import SplineRecord


class CountingIntegrand:
    """Wraps an integrand: counts points evaluated, those inside the cuts (``n_inside``: a finite non-zero value, the
    points where a matrix element is evaluated, as MadEvent's ``results.dat`` counts its points) and failed ones.

    Fails with a one-line RuntimeError once more than ``max_failed_fraction`` of all calls so far failed
    (at least ``MIN_FAILURES_TOLERATED`` failures are always tolerated, so one bad point in a small first
    batch does not stop a run).
    """

    MIN_FAILURES_TOLERATED = 10

    def __init__(self, integrand: Integrand, max_failed_fraction: float = 1.0):
        self.integrand, self.max_failed_fraction = integrand, max_failed_fraction
        self.n_calls = 0
        self.n_inside = 0
        self.n_failed = 0

    def __call__(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        result = self.integrand(r, channel)
        self.n_calls += len(channel)
        self.n_inside += inside_cuts(result.value, result.ok)
        failed = int((~result.ok).sum())
        self.n_failed += failed
        if self.n_failed > max(self.max_failed_fraction * self.n_calls, self.MIN_FAILURES_TOLERATED):
            raise RuntimeError(
                f"{self.n_failed} of {self.n_calls} integrand calls failed (NaN/inf or crash), "
                f"more than max_failed_fraction={self.max_failed_fraction}"
            )
        return result


def inside_cuts(value: torch.Tensor, ok: torch.Tensor | None = None) -> int:
    """Points of a finite non-zero value (and ``ok``): inside the cuts."""
    inside = torch.isfinite(value) & (value != 0)
    return int((inside if ok is None else inside & ok).sum())


@dataclass
class Draw:
    """A batch of points with everything training, integration and event generation need.

    ``q_sample`` is the flow density at drawing time (training dtype); ``weight`` = alpha_i value / q (float64,
    0 for failed points).
    """

    r: torch.Tensor
    channel: torch.Tensor
    q_sample: torch.Tensor
    value: torch.Tensor
    alpha_prior: torch.Tensor | None
    features: torch.Tensor | None
    momenta: torch.Tensor | None
    ok: torch.Tensor
    weight: torch.Tensor
    record: DrawRecord | None = None


@dataclass
class DrawRecord:
    """The flow's splines from drawing a batch, for training's log q at the same points
    (:meth:`MultiChannelSampler.log_q`): per share of the points (their index in the batch; None: all of them) the
    record of the flow's pass over them, forward for the points it drew, inverse for the flat ones
    (:meth:`madnis.flow.Flow.inverse`, ``replay``)."""

    parts: list[tuple[torch.Tensor | None, list[SplineRecord]]] = field(default_factory=list)

    def part(self, index: torch.Tensor | None) -> list[SplineRecord]:
        """A new part: the list the flow's pass over the points at ``index`` fills."""
        self.parts.append((index, []))
        return self.parts[-1][1]

    def take(self, keep: torch.Tensor) -> DrawRecord:
        """The record of the batch's points that the mask ``keep`` selects, indexed within that selection; a part
        left without a point is dropped (the flow takes no empty batch: the flat share's few points of a W+2j
        batch can all lie outside the cuts)."""
        position = torch.cumsum(keep.long(), 0) - 1
        taken = DrawRecord()
        for index, splines in self.parts:
            rows = keep if index is None else keep[index]
            if not bool(rows.any()):
                continue
            kept_index = None if index is None else position[index[rows]]
            taken.parts.append((kept_index, [spline.take(rows) for spline in splines]))
        return taken


def _to_device(result: IntegrandResult, device: torch.device) -> IntegrandResult:
    move = lambda t: None if t is None else t.to(device)  # noqa: E731
    return IntegrandResult(
        move(result.value), move(result.alpha_prior), move(result.ok), move(result.features), move(result.momenta)
    )


class MultiChannelSampler(nn.Module):
    """Flow conditioned on the channel group + channel-weight net + active-channel mask."""

    def __init__(self, integrand: Integrand, config: TrainingConfig):
        super().__init__()
        self.n_channels = integrand.n_channels
        self.register_buffer("group_of_channel", integrand.group_of_channel())
        self.register_buffer("active", torch.ones(integrand.n_channels, dtype=torch.bool))
        self.flow = Flow(
            integrand.ndim,
            n_conditions=int(self.group_of_channel.max()) + 1,
            bins=config.flow_bins,
            blocks=config.flow_blocks,
            permutations=config.flow_permutations,
            hidden_layers=config.flow_hidden_layers,
            hidden_units=config.flow_units(integrand.ndim),
            per_condition=config.per_group_flows,
        )
        self.cwnet = ChannelWeightNet(
            integrand.n_channels, integrand.n_features, config.cwnet_hidden_layers, config.cwnet_hidden_units
        )
        self.train_channel_weights = config.train_channel_weights and integrand.channel_weights_trainable
        self.defensive_fraction = config.defensive_share(integrand.ndim, integrand.jets)

    @property
    def n_groups(self) -> int:
        return self.flow.n_conditions

    @property
    def _flow_parameter(self) -> nn.Parameter:
        """A parameter of the flow: the dtype and device of the points and densities it makes."""
        return next(self.flow.parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The flow's parameters, plus the channel-weight net's when channel weights are trained."""
        modules = [self.flow, self.cwnet] if self.train_channel_weights else [self.flow]
        return [p for m in modules for p in m.parameters()]

    def sample(
        self, channel: torch.Tensor, generator: torch.Generator | None = None, record: DrawRecord | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """r ~ q_{g(channel)} (the defensive mixture, module docstring) and log q (no gradient); ``record`` gets the
        flow's splines (:class:`DrawRecord`).

        Each point first picks its share (flat with probability eps), so the flow samples only the points it
        draws; the flat points need only its density.
        """
        group = self.group_of_channel[channel]
        with torch.no_grad():
            if self.defensive_fraction == 0:
                return self.flow.sample(group, generator, None if record is None else record.part(None))
            reference = self._flow_parameter
            flat = torch.rand(len(group), generator=generator, device=reference.device) < self.defensive_fraction
            r = torch.empty((len(group), self.flow.dims), dtype=reference.dtype, device=reference.device)
            log_q_flow = torch.empty(len(group), dtype=reference.dtype, device=reference.device)
            for share, draw in ((~flat, self.flow.sample), (flat, self._flat_points)):
                if bool(share.any()):
                    splines = None if record is None else record.part(torch.nonzero(share)[:, 0])
                    r[share], log_q_flow[share] = draw(group[share], generator, splines)
            return r, self._mixture(log_q_flow)

    def _flat_points(
        self, group: torch.Tensor, generator: torch.Generator | None, record: list[SplineRecord] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """r flat in the unit cube and the flow's log q_flow there (the mixture needs both densities)."""
        reference = self._flow_parameter
        r = torch.rand(
            (len(group), self.flow.dims), generator=generator, dtype=reference.dtype, device=reference.device
        )
        return r, self.flow.log_prob(r, group, record=record)

    def log_q(self, r: torch.Tensor, channel: torch.Tensor, record: DrawRecord | None = None) -> torch.Tensor:
        """Differentiable log q_{g(channel)}(r) of the defensive mixture. ``record``: that of drawing exactly these
        points with the current parameters, whose splines it reuses (same value and gradient, less work)."""
        group = self.group_of_channel[channel]
        if record is None:
            return self._mixture(self.flow.log_prob(r, group))
        indices, parts = [], []
        for index, splines in record.parts:
            if index is None:
                return self._mixture(self.flow.log_prob(r, group, replay=splines))
            indices.append(index)
            parts.append(self.flow.log_prob(r[index], group[index], replay=splines))
        return self._mixture(torch.cat(parts)[torch.argsort(torch.cat(indices))])

    def _mixture(self, log_q_flow: torch.Tensor) -> torch.Tensor:
        """log((1 - eps) q_flow + eps): the flow's density mixed with the flat one."""
        eps = self.defensive_fraction
        if eps == 0:
            return log_q_flow
        return torch.logaddexp(log_q_flow + math.log1p(-eps), torch.full_like(log_q_flow, math.log(eps)))

    def channel_weights(self, alpha_prior: torch.Tensor | None, features: torch.Tensor | None, n: int) -> torch.Tensor:
        """(n, n_channels) channel weights over the active channels (differentiable when trained)."""
        parameter = self._flow_parameter
        prior = None if alpha_prior is None else alpha_prior.to(parameter.dtype)
        if self.train_channel_weights:
            alpha = self.cwnet(prior, None if features is None else features.to(parameter.dtype), n)
        elif prior is not None:
            alpha = prior
        else:
            alpha = torch.full(
                (n, self.n_channels), 1.0 / self.n_channels, dtype=parameter.dtype, device=parameter.device
            )
        return restrict_channel_weights(alpha, self.active)

    def channel_weight(
        self, channel: torch.Tensor, alpha_prior: torch.Tensor | None, features: torch.Tensor | None
    ) -> torch.Tensor:
        """(n,) weight alpha_{channel}(x) of each point's own channel."""
        return self.channel_weights(alpha_prior, features, len(channel)).gather(1, channel[:, None])[:, 0]

    def draw(
        self,
        integrand: CountingIntegrand,
        channel: torch.Tensor,
        generator: torch.Generator | None = None,
        record: bool = False,
    ) -> Draw:
        """Sample one point per entry of ``channel``, evaluate the integrand and weight each point (no gradient);
        ``record``: keep the flow's splines for training on these points (:class:`DrawRecord`)."""
        channel = channel.to(self.active.device)
        kept = DrawRecord() if record else None
        r, log_q = self.sample(channel, generator, kept)
        result = _to_device(integrand(r.double(), channel), r.device)
        with torch.no_grad():
            alpha = self.channel_weight(channel, result.alpha_prior, result.features)
        weight = alpha.double() * result.value.double() * torch.exp(-log_q.double())
        weight = torch.where(result.ok & torch.isfinite(weight), weight, torch.zeros_like(weight))
        return Draw(
            r,
            channel,
            log_q.exp(),
            result.value,
            result.alpha_prior,
            result.features,
            result.momenta,
            result.ok,
            weight,
            kept,
        )


@dataclass
class WeightedSample:
    """Weighted events: channel i drawn with probability p_i and ``weight`` = w / p_i (float64, pb).

    E[weight] = I for every channel, so weights are comparable across channels (unweighting-ready).
    ``channel_probability`` is each point's p_i, so ``weight * channel_probability`` is its weight w within its
    channel, whose mean estimates I_i whatever the p_i (a stage's points: :class:`~madnis.integration.StagePool`).
    ``alpha_prior`` (the integrand's prior channel weights of each point) is kept so diagnostics such as the
    prior channel shares come from the points drawn, without evaluating the integrand again.
    """

    r: torch.Tensor
    channel: torch.Tensor
    weight: torch.Tensor
    momenta: torch.Tensor | None
    ok: torch.Tensor
    channel_probability: torch.Tensor
    alpha_prior: torch.Tensor | None = None

    @classmethod
    def from_draws(cls, draws: list[Draw], p: torch.Tensor) -> WeightedSample:
        """Batches of points whose channels were chosen with probabilities ``p`` (one per channel)."""
        if not draws:
            raise ValueError("a weighted sample needs at least one point")
        cat = lambda name: None if getattr(draws[0], name) is None else torch.cat([getattr(d, name) for d in draws])  # noqa: E731
        channel = cat("channel")
        probability = p.to(channel.device)[channel]
        return cls(
            cat("r"), channel, cat("weight") / probability, cat("momenta"), cat("ok"), probability, cat("alpha_prior")
        )

    def take(self, index: torch.Tensor) -> WeightedSample:
        """The points at ``index`` (e.g. a permutation)."""
        pick = lambda t: None if t is None else t[index.to(t.device)]  # noqa: E731
        return WeightedSample(*(pick(getattr(self, f.name)) for f in fields(self)))


def channel_probabilities(share: torch.Tensor, active: torch.Tensor, uniform_fraction: float = 0.01) -> torch.Tensor:
    """p_i ∝ max(share_i, 0) (e.g. I_i or w_max_i) over active channels, mixed with a small uniform share so no
    active channel has p_i = 0."""
    uniform = active.double() / active.sum()
    positive = torch.where(active, share.double().clamp_min(0.0), torch.zeros_like(share, dtype=torch.float64))
    if positive.sum() <= 0:
        return uniform
    return (1 - uniform_fraction) * positive / positive.sum() + uniform_fraction * uniform
