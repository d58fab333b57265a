"""Multi-channel integration: I ± dI with points allocated by sigma_i, accumulated in float64.

I = sum_i I_i with I_i the mean weight of channel i and dI^2 = sum_i (Var(w_i) / N_i + tail_i^2), tail_i the
expected contribution of the weights beyond the largest one drawn (:mod:`madnis.tails`: a heavy weight tail
that a finite sample misses would otherwise leave the error too small with the mean). Sums of w and w^2
are kept in float64 whatever the training precision (float32 sums of 10^6 weights lose the variance and
give pulls of hundreds). Failed points (``ok`` False) count as weight 0 and are reported, never NaN.
The result carries a per-channel and a per-group contribution table (:meth:`IntegrationResult.format_table`),
with each channel's maximum weight by MadEvent's rule (:func:`madnis.unweighting.channel_max_weights`): they
choose the channels of the points drawn for unweighting.

Points of several *stages* (batches whose size and channel allocation were fixed before they were drawn: a training
batch, an integration, the event generation's points) pool into one cross section with :class:`StagePool`, each
stage's per-channel mean weighted by the stage's size, never by the points it happened to give a channel: a later
stage's allocation follows the earlier ones' weights (sigma_i, w_max_i), and pooling per channel would then dilute
exactly the channels whose earlier points were high (heavy-tailed toy: -0.82 +- 0.09 permil against -0.26 +- 0.10
stage by stage, ``benchmarks/results/sigma_bias.md``).

Stages pool per channel only where they estimate the same I_i: the points of one sampler (one set of channel weights).
Samplers whose channel weights differ (learned weights between training batches) estimate different I_i and only the
same I; :class:`SamplerPools` pools each sampler's stages into one stage (:meth:`StagePool.collapsed`) before pooling
samplers by their sizes, so a channel that one stage missed (the generation's points choose channels at random) takes
its sampler's mean at the sampler's full size instead of shifting the mix of channel weights it is averaged over.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .tails import TOP_WEIGHTS, channel_tails, largest_magnitudes
from .unweighting import channel_max_weights, multichannel_efficiency


@dataclass
class ChannelContribution:
    """One channel's (or group's) share: ``fraction`` = integral / total integral; ``max_weight``: w_max of its
    weights by MadEvent's rule (a group's: the sum of its channels'; 0 when not measured); ``error`` includes
    ``tail``, the weight-tail term (:mod:`madnis.tails`), in quadrature."""

    channel: int
    group: int
    integral: float
    error: float
    n_points: int
    fraction: float
    max_weight: float = 0.0
    tail: float = 0.0


@dataclass
class IntegrationResult:
    integral: float
    error: float
    n_points: int
    channels: list[ChannelContribution] = field(default_factory=list)
    n_failed: int = 0

    @property
    def rel_error(self) -> float:
        return self.error / abs(self.integral) if self.integral != 0 else math.inf

    @property
    def tail_error(self) -> float:
        """The weight-tail part of ``error`` (:mod:`madnis.tails`), channels in quadrature."""
        return math.sqrt(sum(c.tail**2 for c in self.channels))

    def channel_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_channels,) float64 tensors of the channels' integrals I_i and maximum weights w_max_i."""
        integral = torch.tensor([c.integral for c in self.channels], dtype=torch.float64)
        return integral, torch.tensor([c.max_weight for c in self.channels], dtype=torch.float64)

    @property
    def unweighting_efficiency(self) -> float:
        """sum_i |I_i| / sum_i w_max_i: the efficiency of unweighting points drawn with p_i ∝ w_max_i."""
        return multichannel_efficiency(*self.channel_tensors())

    def groups(self) -> list[ChannelContribution]:
        """Contributions summed per channel group (``channel`` is then the group's first channel)."""
        by_group: dict[int, list[ChannelContribution]] = {}
        for c in self.channels:
            by_group.setdefault(c.group, []).append(c)
        return [
            ChannelContribution(
                channel=members[0].channel,
                group=g,
                integral=sum(c.integral for c in members),
                error=math.sqrt(sum(c.error**2 for c in members)),
                n_points=sum(c.n_points for c in members),
                fraction=sum(c.fraction for c in members),
                max_weight=sum(c.max_weight for c in members),
                tail=math.sqrt(sum(c.tail**2 for c in members)),
            )
            for g, members in sorted(by_group.items())
        ]

    def format_table(self) -> str:
        """Human-readable table: total, then channels, then groups."""
        lines = [
            f"integral = {self.integral:.6e} +- {self.error:.3e} (rel. {self.rel_error:.2e}), "
            f"{self.n_points} points, {self.n_failed} failed",
            f"{'channel':>8} {'group':>6} {'integral':>13} {'error':>10} {'points':>9} {'fraction':>9}",
        ]
        for c in self.channels:
            lines.append(
                f"{c.channel:>8} {c.group:>6} {c.integral:>13.5e} {c.error:>10.3e} {c.n_points:>9} {c.fraction:>9.2%}"
            )
        lines.append(f"{'group':>8} {'':>6} {'integral':>13} {'error':>10} {'points':>9} {'fraction':>9}")
        for g in self.groups():
            lines.append(
                f"{g.group:>8} {'':>6} {g.integral:>13.5e} {g.error:>10.3e} {g.n_points:>9} {g.fraction:>9.2%}"
            )
        return "\n".join(lines)


class ChannelAccumulator:
    """float64 per-channel point counts, means, summed squared deviations (M2) and largest |w|, failure count.

    Batches are merged with Chan et al.'s parallel update, so the variance does not suffer from the
    cancellation of sum(w^2)/n - mean^2 when the weights are nearly constant (a well-trained flow). The
    largest |w| of each channel (``top``) feed the weight-tail term of the error (:mod:`madnis.tails`).
    Accumulators of disjoint points of one stage merge (:meth:`merge`); stages pool in a :class:`StagePool`.
    """

    def __init__(self, n_channels: int):
        self.n = torch.zeros(n_channels, dtype=torch.float64)
        self.mean = torch.zeros(n_channels, dtype=torch.float64)
        self.m2 = torch.zeros(n_channels, dtype=torch.float64)
        self.top = torch.zeros(n_channels, TOP_WEIGHTS, dtype=torch.float64)
        self.n_failed = 0

    @classmethod
    def of(
        cls, n_channels: int, channel: torch.Tensor, weight: torch.Tensor, ok: torch.Tensor, tails: bool = True
    ) -> ChannelAccumulator:
        """The accumulator of one batch; ``tails=False`` leaves ``top`` at zero (a training step's running
        estimates need no tail term: its largest weights cost ~3 ms per 1024 points in 48 channels)."""
        channel, ok = channel.cpu(), ok.cpu()
        weight = torch.where(ok, weight.detach().cpu().double(), torch.zeros((), dtype=torch.float64))
        batch = cls(n_channels)
        batch.n.index_add_(0, channel, torch.ones_like(weight))
        batch.mean = batch.mean.index_add_(0, channel, weight) / batch.n.clamp_min(1)
        batch.m2.index_add_(0, channel, (weight - batch.mean[channel]) ** 2)
        if tails:
            batch.top = largest_magnitudes(weight, channel, n_channels)
        batch.n_failed = int((~ok).sum())
        return batch

    def add(self, channel: torch.Tensor, weight: torch.Tensor, ok: torch.Tensor) -> None:
        self.merge(ChannelAccumulator.of(len(self.n), channel, weight, ok))

    def merge(self, other: ChannelAccumulator) -> None:
        """Add ``other``'s points to these (Chan et al.'s parallel update of mean and M2)."""
        total = self.n + other.n
        delta = other.mean - self.mean
        share = other.n / total.clamp_min(1)
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + other.m2 + delta**2 * self.n * share
        self.n = total
        self.top = torch.topk(torch.cat([self.top, other.top], dim=1), TOP_WEIGHTS, dim=1).values
        self.n_failed += other.n_failed

    def channel_estimates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel I_i and the statistical variance of its estimate (a channel with one point gets |I_i|^2)."""
        variance = self.m2 / (self.n * (self.n - 1)).clamp_min(1)
        return self.mean.clone(), torch.where(self.n == 1, self.mean**2, variance)

    def result(self, group_of_channel: torch.Tensor) -> IntegrationResult:
        """I and dI: per channel the statistical variance plus the weight-tail term squared."""
        mean, variance = self.channel_estimates()
        tails = channel_tails(self.top, self.n, self.mean)
        return _result(mean, variance + tails**2, tails, self.n, group_of_channel, self.n_failed)


class StagePool:
    """Stages of points pooled into one I: per channel, I_i = sum_s N_s m_is / sum_s N_s over the stages s in which
    channel i has points, with N_s the stage's size and m_is its mean weight in channel i; Var I_i = sum_s N_s^2
    Var(m_is) / (sum_s N_s)^2, plus the weight-tail term of all its points (:mod:`madnis.tails`).

    Why by size: a stage's size and channel allocation are fixed before it is drawn, so each m_is is unbiased for I_i
    and the weights N_s do not depend on its values; pooled per channel (weights n_is), a stage that follows an
    outlier of channel i with more points in channel i (allocation by sigma_i or w_max_i) would dilute it (module
    docstring). Everything is a sum over stages, so pools of separate jobs merge by adding (:meth:`merge`).
    """

    FIELDS = ("size", "weighted", "variance", "n", "top", "total")

    def __init__(self, n_channels: int):
        self.total = torch.zeros((), dtype=torch.float64)  # sum_s N_s over every stage
        self.size = torch.zeros(n_channels, dtype=torch.float64)  # sum_s N_s over the stages with points in i
        self.weighted = torch.zeros(n_channels, dtype=torch.float64)  # sum_s N_s m_is
        self.variance = torch.zeros(n_channels, dtype=torch.float64)  # sum_s N_s^2 Var(m_is)
        self.n = torch.zeros(n_channels, dtype=torch.float64)  # points
        self.top = torch.zeros(n_channels, TOP_WEIGHTS, dtype=torch.float64)
        self.n_failed = 0

    @classmethod
    def of_stage(cls, stage: ChannelAccumulator) -> StagePool:
        """One stage: all of ``stage``'s points were drawn with a size and allocation fixed before them."""
        pool = cls(len(stage.n))
        mean, variance = stage.channel_estimates()
        present = stage.n > 0
        size = float(stage.n.sum())
        pool.total = torch.tensor(size, dtype=torch.float64)
        pool.size = torch.where(present, size, 0.0).double()
        pool.weighted = torch.where(present, size * mean, 0.0).double()
        pool.variance = torch.where(present, size**2 * variance, 0.0).double()
        pool.n, pool.top, pool.n_failed = stage.n.clone(), stage.top.clone(), stage.n_failed
        return pool

    @property
    def n_points(self) -> int:
        return int(self.n.sum())

    def merge(self, other: StagePool) -> StagePool:
        """Both pools' stages as one pool (a new object)."""
        pool = StagePool(len(self.n))
        for name in ("total", "size", "weighted", "variance", "n"):
            setattr(pool, name, getattr(self, name) + getattr(other, name))
        pool.top = torch.topk(torch.cat([self.top, other.top], dim=1), TOP_WEIGHTS, dim=1).values
        pool.n_failed = self.n_failed + other.n_failed
        return pool

    def collapsed(self) -> StagePool:
        """These stages as one stage of their total size: per channel their pooled mean and its variance, every
        channel at the total size (a channel without points: mean 0, as a channel that no longer has weight)."""
        pool = StagePool(len(self.n))
        size = self.size.clamp_min(1)
        pool.total, pool.size = self.total.clone(), torch.full_like(self.size, float(self.total))
        pool.weighted = self.total * self.weighted / size
        pool.variance = self.total**2 * self.variance / size**2
        pool.n, pool.top, pool.n_failed = self.n.clone(), self.top.clone(), self.n_failed
        return pool

    def arrays(self, prefix: str) -> dict[str, torch.Tensor]:
        """The state as named arrays (for ``numpy.savez``), see :meth:`from_arrays`."""
        return {f"{prefix}{k}": getattr(self, k) for k in self.FIELDS} | {
            f"{prefix}n_failed": torch.tensor(self.n_failed)
        }

    @classmethod
    def from_arrays(cls, data, prefix: str) -> StagePool:
        """The pool whose :meth:`arrays` (or their numpy copies) ``data`` holds."""
        pool = cls(len(data[f"{prefix}n"]))
        for k in cls.FIELDS:
            setattr(pool, k, torch.as_tensor(data[f"{prefix}{k}"], dtype=torch.float64))
        pool.n_failed = int(data[f"{prefix}n_failed"])
        return pool

    def result(self, group_of_channel: torch.Tensor) -> IntegrationResult:
        """I and dI: per channel the stages' statistical variance plus the weight-tail term squared."""
        size = self.size.clamp_min(1)
        mean, variance = self.weighted / size, self.variance / size**2
        tails = channel_tails(self.top, self.n, mean)
        return _result(mean, variance + tails**2, tails, self.n, group_of_channel, self.n_failed)


class SamplerPools:
    """The stages of several samplers pooled into one I (module docstring): ``earlier``, the stages of samplers other
    than the final one, each sampler (a training batch, an efficiency check's points) added collapsed; ``final``, the
    final sampler's stages, which may come from several jobs and pool per channel. I pools ``earlier`` with ``final``
    collapsed. Everything is a sum, so pools of separate jobs merge by adding (:meth:`merge`)."""

    def __init__(self, n_channels: int):
        self.earlier, self.final = StagePool(n_channels), StagePool(n_channels)

    def add(self, stage: ChannelAccumulator, final: bool) -> None:
        """One stage: of the final sampler (``final``), or the only stage of an earlier sampler."""
        if final:
            self.final = self.final.merge(StagePool.of_stage(stage))
        else:
            self.earlier = self.earlier.merge(StagePool.of_stage(stage).collapsed())

    def merge(self, other: SamplerPools) -> SamplerPools:
        """Both pools' stages as one (a new object)."""
        pools = SamplerPools(len(self.final.n))
        pools.earlier, pools.final = self.earlier.merge(other.earlier), self.final.merge(other.final)
        return pools

    @property
    def n_points(self) -> int:
        return self.earlier.n_points + self.final.n_points

    def arrays(self, prefix: str) -> dict[str, torch.Tensor]:
        """The state as named arrays (for ``numpy.savez``), see :meth:`from_arrays`."""
        return self.earlier.arrays(f"{prefix}earlier_") | self.final.arrays(f"{prefix}final_")

    @classmethod
    def from_arrays(cls, data, prefix: str) -> SamplerPools:
        """The pools whose :meth:`arrays` (or their numpy copies) ``data`` holds."""
        pools = cls(len(data[f"{prefix}final_n"]))
        pools.earlier = StagePool.from_arrays(data, f"{prefix}earlier_")
        pools.final = StagePool.from_arrays(data, f"{prefix}final_")
        return pools

    def pooled(self) -> StagePool:
        """Every stage as one pool: the earlier samplers and the final one collapsed, by their sizes."""
        return self.earlier.merge(self.final.collapsed())

    def result(self, group_of_channel: torch.Tensor) -> IntegrationResult:
        return self.pooled().result(group_of_channel)


def _result(
    mean: torch.Tensor,
    variance: torch.Tensor,
    tails: torch.Tensor,
    n: torch.Tensor,
    group_of_channel: torch.Tensor,
    n_failed: int,
) -> IntegrationResult:
    """The result of per-channel means and variances (the tail term included), with its contribution table."""
    total = float(mean.sum())
    channels = [
        ChannelContribution(
            channel=i,
            group=int(group_of_channel[i]),
            integral=float(mean[i]),
            error=math.sqrt(float(variance[i])),
            n_points=int(n[i]),
            fraction=float(mean[i]) / total if total != 0 else 0.0,
            tail=float(tails[i]),
        )
        for i in range(len(mean))
    ]
    return IntegrationResult(total, math.sqrt(float(variance.sum())), int(n.sum()), channels, n_failed)


WeightFunction = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def integrate(
    weight_fn: WeightFunction,
    counts: torch.Tensor,
    group_of_channel: torch.Tensor,
    batch_size: int,
    callback: Callable[[IntegrationResult], None] | None = None,
    max_overweight: float = 1e-3,
) -> IntegrationResult:
    """Integrate with ``counts[i]`` points in channel i, in batches of at most ``batch_size`` points.

    ``weight_fn(channel)`` draws one point per entry of ``channel`` and returns (weight, ok).
    ``callback`` receives the running result after each batch. The final result's channels carry their
    w_max with ``max_overweight``.
    """
    accumulator = ChannelAccumulator(len(counts))
    channels = torch.repeat_interleave(torch.arange(len(counts)), counts.cpu())
    weights = []
    for start in range(0, len(channels), batch_size):
        channel = channels[start : start + batch_size]
        weight, ok = weight_fn(channel)
        accumulator.add(channel, weight, ok)
        weights.append(torch.where(ok.cpu(), weight.detach().cpu().double(), torch.zeros((), dtype=torch.float64)))
        if callback is not None:
            callback(accumulator.result(group_of_channel))
    result = accumulator.result(group_of_channel)
    if weights:
        max_weights = channel_max_weights(torch.cat(weights), channels, len(counts), max_overweight)
        for contribution, w_max in zip(result.channels, max_weights.tolist()):
            contribution.max_weight = w_max
    return result
