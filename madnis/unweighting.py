"""Unweighting: turn weighted events into (almost) unit-weight events by hit-or-miss.

An event with weight w is kept with probability min(1, |w| / w_max). A single huge weight would
set a huge w_max and ruin the efficiency <w>/w_max, so w_max is chosen robustly:

- default: the median over ``n_bootstrap`` random disjoint subsamples of each subsample's maximum
  (below the true maximum when the weight distribution has a heavy tail);
- ``overweight_fraction = f > 0``: the weighted quantile such that events with |w| > w_max carry
  the fraction f of the total |weight|.

Events above w_max (overweights) are always kept with weight |w| instead of w_max, so the sum of
the unweighted event weights still estimates the integral without bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def robust_max_weight(
    weights: torch.Tensor,
    *,
    n_bootstrap: int = 100,
    overweight_fraction: float = 0.0,
    generator: torch.Generator | None = None,
) -> float:
    """Robust w_max of |weights| (see module doc)."""
    weights = weights.detach().abs().double().flatten()
    if weights.numel() == 0 or not torch.isfinite(weights).all():
        raise ValueError("robust_max_weight needs a non-empty tensor of finite weights")
    if overweight_fraction > 0:
        if overweight_fraction >= 1:
            raise ValueError(f"overweight_fraction must be in [0, 1), got {overweight_fraction}")
        ordered = weights.sort(descending=True).values
        above = torch.cumsum(ordered, 0) / ordered.sum()  # weight fraction of the k+1 largest
        k = int(torch.searchsorted(above, torch.tensor(overweight_fraction, dtype=above.dtype), right=True))
        return float(ordered[min(k, ordered.numel() - 1)])
    n_bootstrap = max(1, min(n_bootstrap, weights.numel()))
    permutation = torch.randperm(weights.numel(), generator=generator)
    size = weights.numel() // n_bootstrap
    maxima = weights[permutation[: size * n_bootstrap]].view(n_bootstrap, size).max(dim=1).values
    return float(maxima.median())


def unweighting_efficiency(weights: torch.Tensor, w_max: float) -> float:
    """<|w|> / w_max: the fraction of events hit-or-miss keeps."""
    return float(weights.abs().double().mean() / w_max)


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
    """

    indices: torch.Tensor
    weights: torch.Tensor
    w_max: float
    efficiency: float
    n_overweight: int


def unweight(
    weights: torch.Tensor,
    n_events: int | None = None,
    *,
    w_max: float | None = None,
    generator: torch.Generator | None = None,
) -> UnweightedSelection:
    """Hit-or-miss unweighting of ``weights`` (n,); keeps all accepted events or the first ``n_events``.

    Negative weights are unweighted by |w| and keep their sign.
    """
    weights = weights.detach().double().flatten()
    magnitude = weights.abs()
    if w_max is None:
        w_max = robust_max_weight(magnitude, generator=generator)
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
    )
