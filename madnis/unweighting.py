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
channel's own efficiency: one channel with a long tail sets w_max for all. With p_i ∝ w_max_i (each channel's
own w_max by the rule above, :func:`channel_max_weights`) every channel reaches w_max / p_i at the same value
and the efficiency is sum_i I_i / sum_i w_max_i (:func:`multichannel_efficiency`), the largest any choice of
p_i gives; it is what MadEvent does when every G channel unweights against its own maximum and the channels'
events are combined by cross section. The share above w_max stays within ``max_overweight`` per channel,
hence in total.

The w_max_i are estimated from a sample (a few thousand points of a heavy-tailed channel can misjudge its w_max
several-fold), yet allocating half of the points ∝ I_i instead lost in launches: the generation chunks of four
trained ``g g > w+ d u~ g`` channel parts needed 1.35x more weighted points for the same 40k events, although on a
fixed sample the mixture had looked better (``benchmarks/results/unweighting_allocation*.md``). A chunk's top-up
batches follow its own w_max_i, so a channel whose outlier showed up gets the points that dilute it.
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
    """(n_channels,) float64: :func:`max_weight` of each channel's own weights (0 for a channel without a
    non-zero weight)."""
    magnitude, channel = weights.detach().abs().double().cpu(), channel.cpu()
    out = torch.zeros(n_channels, dtype=torch.float64)
    for i in torch.unique(channel[magnitude > 0]).tolist():
        out[i] = max_weight(magnitude[channel == i], max_overweight)
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
