"""Stratified sampling: points per channel proportional to the running sigma_i (MadNIS Reloaded sec. 3.3).

With N_i points in channel i the integral's variance is sum_i sigma_i^2 / N_i, minimal for N_i ∝ sigma_i.
:class:`ChannelStatistics` keeps exponential running means of each channel's I_i and sigma_i (also used by
channel dropping and the final integration); :func:`allocate_points` turns them into exact integer counts
that sum to the batch size, with a uniform share so no active channel starves, and 0 for dropped channels.
During the first ``warmup_steps`` online steps (no reliable sigma_i yet) the allocation is uniform.
"""

from __future__ import annotations

import torch
from torch import nn


def largest_remainder(shares: torch.Tensor, n_points: int) -> torch.Tensor:
    """Integer counts proportional to ``shares`` (>= 0, not all 0) summing exactly to ``n_points``."""
    exact = shares.double() / shares.double().sum() * n_points
    counts = exact.floor().long()
    missing = n_points - int(counts.sum())
    if missing > 0:
        counts[torch.argsort(exact - counts, descending=True)[:missing]] += 1
    return counts


def allocate_points(
    n_points: int, sigma: torch.Tensor, active: torch.Tensor, uniform_fraction: float = 0.1, min_points: int = 0
) -> torch.Tensor:
    """(n_channels,) long counts: ``uniform_fraction`` spread evenly over active channels, the rest ∝ sigma_i.

    Every active channel gets at least ``min_points`` when the batch allows; inactive channels get 0.
    Falls back to uniform when no active channel has sigma_i > 0.
    """
    active = active.bool()
    n_active = int(active.sum())
    if n_active == 0:
        raise ValueError("no active channel to allocate points to")
    uniform = active.double() / n_active
    sigma = torch.where(active, sigma.double().clamp_min(0.0), torch.zeros_like(sigma, dtype=torch.float64))
    total = float(sigma.sum())
    shares = uniform if total <= 0 else uniform_fraction * uniform + (1 - uniform_fraction) * sigma / total
    floor = min(min_points, n_points // n_active)
    counts = (
        largest_remainder(shares, n_points - floor * n_active)
        if n_points > floor * n_active
        else torch.zeros_like(sigma, dtype=torch.long)
    )
    return counts + floor * active.long()


class ChannelStatistics(nn.Module):
    """Exponential running means of each channel's integral I_i and standard deviation sigma_i (per point)."""

    def __init__(self, n_channels: int, decay: float = 0.9):
        super().__init__()
        self.decay = decay
        self.register_buffer("integral", torch.zeros(n_channels, dtype=torch.float64))
        self.register_buffer("sigma", torch.zeros(n_channels, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(n_channels, dtype=torch.bool))

    def update(self, integral: torch.Tensor, sigma: torch.Tensor, measured: torch.Tensor) -> None:
        """Fold in one batch's estimates for the channels where ``measured`` (first time: take them as they are)."""
        integral, sigma = integral.detach().double(), sigma.detach().double()
        weight = torch.where(self.seen, torch.full_like(self.integral, self.decay), torch.zeros_like(self.integral))
        new_integral = weight * self.integral + (1 - weight) * integral
        new_sigma = weight * self.sigma + (1 - weight) * sigma
        self.integral = torch.where(measured, new_integral, self.integral)
        self.sigma = torch.where(measured, new_sigma, self.sigma)
        self.seen = self.seen | measured


class Stratifier:
    """Channel allocation of the online batches: uniform during warm-up, then ∝ running sigma_i."""

    def __init__(self, statistics: ChannelStatistics, uniform_fraction: float = 0.1, warmup_steps: int = 0):
        self.statistics, self.uniform_fraction, self.warmup_steps = statistics, uniform_fraction, warmup_steps

    def counts(self, n_points: int, active: torch.Tensor, online_step: int) -> torch.Tensor:
        if online_step < self.warmup_steps:
            return allocate_points(n_points, torch.zeros_like(self.statistics.sigma), active, min_points=2)
        return allocate_points(n_points, self.statistics.sigma, active, self.uniform_fraction, min_points=2)
