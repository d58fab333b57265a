"""Channel dropping (MadNIS Reloaded, arXiv:2311.01548 sec. 3.4).

Many MadEvent channels contribute almost nothing, yet cost points and network capacity. After a warm-up
the smallest channels whose summed running |I_i| is below ``threshold * I`` are switched off. Dropping
must not bias the result: the channel weights are renormalised over the active channels,
alpha_i / sum_{j active} alpha_j, so the remaining channels still integrate all of f.
"""

from __future__ import annotations

import torch


def channels_to_drop(integral: torch.Tensor, active: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool mask of active channels to drop: the smallest ones whose |I_i| sum stays below threshold * sum |I|.

    At least one channel always stays active.
    """
    active = active.bool()
    size = torch.where(active, integral.abs().double(), torch.full_like(integral, float("inf"), dtype=torch.float64))
    order = torch.argsort(size)
    total = float(integral.abs().double()[active].sum())
    cumulative = torch.cumsum(torch.where(torch.isinf(size[order]), 0.0, size[order]), 0)
    drop_sorted = (cumulative < threshold * total) & active[order]
    drop_sorted[int(active.sum()) - 1 :] = False  # keep the largest active channel whatever happens
    drop = torch.zeros_like(active)
    drop[order] = drop_sorted
    return drop


def restrict_channel_weights(alpha: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """(n, n_channels) weights renormalised over the active channels (0 for dropped ones).

    Rows whose active weights sum to 0 (all underflowed) get uniform weights over the active channels,
    so every row still sums to 1 and nothing is 0/0.
    """
    mask = active.to(alpha.dtype)
    kept = alpha * mask
    total = kept.sum(dim=1, keepdim=True)
    uniform = mask.expand_as(alpha) / mask.sum()
    return torch.where(total > 0, kept / total.clamp_min(torch.finfo(alpha.dtype).tiny), uniform)
