"""Unweighting: turn weighted events into (almost) unit-weight events by hit-or-miss, MadEvent's way.

An event with weight w is kept with probability min(1, |w| / w_max); the efficiency is <|w|> / w_max.
One rule chooses w_max everywhere (the plugin's events, the benchmarks' efficiencies): MadEvent's
final unweighting rule (its combine step, ``trunc_error``): w_max is the smallest value such that the
weight above it, sum((|w| - w_max)+), is at most a share ``max_overweight`` of the total sum(|w|)
(``TrainingConfig.max_overweight``, default 1e-3). Why: a single huge weight would otherwise set w_max
and ruin the efficiency, while the rule bounds exactly what the cap affects.

Events above w_max (overweights) are not truncated: they are kept (always accepted) with weight
|w| / w_max in units of the unit weight, i.e. |w| instead of w_max, so the sum of the unweighted event
weights still estimates the integral without bias. The share of the total weight above w_max is the
share of sigma carried by these non-unit weights.

Several channels: the weighted points of channel i (weights w with mean I_i) are drawn with probability p_i
and carry w / p_i. Hit-or-miss against one w_max then needs w_max >= max_i w_max_i / p_i, so the efficiency
is sum_i I_i / max_i (w_max_i / p_i). With p_i ∝ I_i (every channel's weights on one scale) that is the worst
channel's own efficiency: one channel with a long tail sets w_max for all. With p_i ∝ w_max_i every channel reaches
w_max / p_i at the same value W = sum_i w_max_i, the efficiency is sum_i I_i / sum_i w_max_i
(:func:`multichannel_efficiency`), and the weight above W in the mixed sample is sum_i e_i(w_max_i), e_i(t) the mean
of (|w| - t)+ in channel i: MadEvent's rule on the events as generated bounds that sum by ``max_overweight`` x
sum_i I_i. :func:`channel_max_weights` chooses the w_max_i together for the smallest sum_i w_max_i under that bound:
a channel with a long tail takes more of the allowed overweight than its share of sigma. The rule before (each
channel a share ``max_overweight`` of its own I_i, as MadEvent's G channels unweighted separately) meets the same
bound with a larger sum: on fixed samples of a trained ``g g > w+ d u~ g`` part the joint choice unweighted at 1.24 %
against 1.06 % (thresholds from one half of 300k points applied to the other); in a launch's generation chunks,
whose w_max moves with every outlier, it needed 0.95x the points with whole-batch top-ups and 1.01x with sized ones
(``benchmarks/results/unweighting_allocation_joint.md``).

The w_max_i are estimated from a sample (a few thousand points of a heavy-tailed channel can misjudge its w_max
several-fold), yet allocating half of the points ∝ I_i instead lost in launches: the generation chunks of four
trained ``g g > w+ d u~ g`` channel parts needed 1.35x more weighted points for the same 40k events, although on a
fixed sample the mixture had looked better (``benchmarks/results/unweighting_allocation*.md``). The plugin's points
drawn for events follow p_i and one w_max fixed from the integration before any of them is drawn
(``madnis_plugin.run.sample.EventPlan``): re-derived from a chunk's own points, a channel whose outlier showed up got
the points that diluted it, and sigma came out low.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def max_weight(weights: torch.Tensor, max_overweight: float = 1e-3) -> float:
    """MadEvent's w_max of |weights|: the smallest w_max with sum((|w| - w_max)+) <= max_overweight * sum(|w|).

    Between two sampled weights the excess is linear in w_max, so the bound is met with equality
    (unless it holds already at the smallest weight, which is then returned); ``max_overweight = 0``
    gives the largest weight.
    """
    if not 0 <= max_overweight < 1:
        raise ValueError(f"max_overweight must be in [0, 1), got {max_overweight}")
    ordered = weights.detach().abs().double().flatten().sort(descending=True).values
    if ordered.numel() == 0 or not torch.isfinite(ordered).all() or not ordered[0] > 0:
        raise ValueError("max_weight needs a non-empty tensor of finite weights, not all zero")
    cumulative = torch.cumsum(ordered, 0)
    allowed = max_overweight * float(cumulative[-1])
    count = torch.arange(1, ordered.numel() + 1, dtype=torch.float64)
    excess = cumulative - count * ordered  # weight above w_max = ordered[j]: nondecreasing in j
    j = int(torch.searchsorted(excess, torch.tensor([allowed], dtype=torch.float64), right=True)[0]) - 1
    if j == ordered.numel() - 1:
        return float(ordered[-1])
    return max(float(ordered[j + 1]), (float(cumulative[j]) - allowed) / (j + 1))


def channel_max_weights(
    weights: torch.Tensor, channel: torch.Tensor, n_channels: int, max_overweight: float = 1e-3
) -> torch.Tensor:
    """(n_channels,) float64: the channels' w_max_i, chosen together (module docstring): the smallest sum_i w_max_i
    whose overweights sum_i e_i(w_max_i) are at most ``max_overweight`` x sum_i I_i, with e_i(t) the mean of
    (|w| - t)+ and I_i the mean |w| over channel i's points (0 for a channel without a non-zero weight).

    Lowering w_max_i from its largest weight, through the segment between its s-th and (s+1)-th largest weights,
    costs (s + 1) / n_i of overweight per unit of w_max_i, a rate that only grows as w_max_i falls (e_i is convex).
    So the segments of all channels are taken in order of their rate until the allowed overweight is spent, the
    last one in part (with one channel: :func:`max_weight`). At the optimum every channel's w_max_i is exceeded by
    about the same share of its points (Lagrange: d e_i / dt = -P_i(|w| > t))."""
    magnitude, channel = weights.detach().abs().double().cpu(), channel.cpu()
    present = torch.unique(channel[magnitude > 0])
    out = torch.zeros(n_channels, dtype=torch.float64)
    if len(present) == 0:
        return out
    ordered = [magnitude[channel == i].sort(descending=True).values for i in present.tolist()]
    allowed = max_overweight * sum(float(o.mean()) for o in ordered)
    rates, lengths, owners = [], [], []
    for owner, o in enumerate(ordered):
        n = len(o)
        excess = (torch.cumsum(o, 0) - torch.arange(1, n + 1, dtype=torch.float64) * o) / n  # e_i at o[s]
        reachable = int(torch.searchsorted(excess, torch.tensor([allowed], dtype=torch.float64), right=True)[0])
        s = torch.arange(reachable)  # segments from o[s] down to o[s + 1] (to 0 after the smallest weight)
        rates.append((s + 1).double() / n)
        lengths.append(o[s] - torch.cat([o, o.new_zeros(1)])[s + 1])
        owners.append(torch.full((reachable,), owner))
    rate, length, owner = torch.cat(rates), torch.cat(lengths), torch.cat(owners)
    order = torch.sort(rate, stable=True).indices
    rate, length, owner = rate[order], length[order], owner[order]
    spent = torch.cumsum(rate * length, 0)
    full = spent <= allowed
    lowered = torch.where(full, length, torch.zeros_like(length))
    partial = int(full.sum())
    if partial < len(rate):  # the first segment not taken whole gets what is left
        before = float(spent[partial - 1]) if partial else 0.0
        lowered[partial] = (allowed - before) / float(rate[partial])
    reduction = torch.zeros(len(ordered), dtype=torch.float64).index_add_(0, owner, lowered)
    out[present] = torch.stack([o[0] for o in ordered]) - reduction
    return out


def multichannel_efficiency(integrals: torch.Tensor, max_weights: torch.Tensor) -> float:
    """sum_i |I_i| / sum_i w_max_i: the efficiency with channel i drawn with p_i ∝ w_max_i (module docstring)."""
    total = float(max_weights.double().sum())
    return float(integrals.double().abs().sum()) / total if total > 0 else 0.0


def overweight_share(weights: torch.Tensor, w_max: float | torch.Tensor) -> float:
    """sum((|w| - w_max)+) / sum(|w|): the share of the total weight (of sigma) above w_max (one, or each point's)."""
    magnitude = weights.detach().abs().double()
    return float((magnitude - w_max).clamp(min=0).sum() / magnitude.sum())


def unweighting_efficiency(weights: torch.Tensor, w_max: float | torch.Tensor) -> float:
    """<|w| / w_max>: the fraction of events hit-or-miss keeps (w_max: one, or each point's)."""
    return float((weights.abs().double() / w_max).mean())


def madevent_efficiency(weights: torch.Tensor, max_overweight: float = 1e-3) -> float:
    """The efficiency of ``weights`` unweighted against their own w_max by MadEvent's rule (:func:`max_weight`)."""
    return unweighting_efficiency(weights, max_weight(weights, max_overweight))


@dataclass
class UnweightedSelection:
    """Result of :func:`unweight`.

    Attributes:
        indices: positions of the kept events in the weighted sample, in order.
        weights: per kept event sign(w) * max(w_max, |w|) / N_used, so that their sum estimates the
            integral <w> (N_used: weighted events looked at, up to the last kept one).
        w_max: the maximum weight used.
        efficiency: <|w|> / w_max over the weighted events looked at.
        n_overweight: kept events with |w| > w_max.
        overweight_share: share of the weight above w_max over the weighted events looked at.
    """

    indices: torch.Tensor
    weights: torch.Tensor
    w_max: float
    efficiency: float
    n_overweight: int
    overweight_share: float


def unweight(
    weights: torch.Tensor,
    n_events: int | None = None,
    *,
    w_max: float | None = None,
    max_overweight: float = 1e-3,
    generator: torch.Generator | None = None,
) -> UnweightedSelection:
    """Hit-or-miss unweighting of ``weights`` (n,); keeps all accepted events or the first ``n_events``.

    ``w_max`` defaults to :func:`max_weight` of ``weights`` with ``max_overweight``. Negative weights are
    unweighted by |w| and keep their sign.
    """
    weights = weights.detach().double().flatten()
    magnitude = weights.abs()
    if w_max is None:
        w_max = max_weight(magnitude, max_overweight)
    if not w_max > 0:
        raise ValueError(f"w_max must be positive, got {w_max}")
    uniform = torch.rand(weights.shape, generator=generator, dtype=torch.float64).to(weights.device)
    indices = torch.nonzero(uniform * w_max < magnitude)[:, 0]
    if n_events is not None:
        indices = indices[:n_events]
    n_used = int(indices[-1]) + 1 if n_events is not None and indices.numel() == n_events else weights.numel()
    kept = magnitude[indices]
    event_weights = torch.sign(weights[indices]) * kept.clamp(min=w_max) / n_used
    return UnweightedSelection(
        indices=indices,
        weights=event_weights,
        w_max=float(w_max),
        efficiency=float(magnitude[:n_used].mean() / w_max),
        n_overweight=int((kept > w_max).sum()),
        overweight_share=overweight_share(magnitude[:n_used], w_max),
    )
