"""A small torch VEGAS grid (Lepage, J. Comput. Phys. 27 (1978) 192) for pre-training.

Separable importance sampling: per dimension a piecewise-linear map from the uniform y in [0,1]
to r with ``bins`` bins of equal probability and adaptive widths. One grid per condition (channel
group), all stored in one tensor ``edges`` (n_conditions, dims, bins+1). The grids are later
converted into the flow's splines (:mod:`madnis.vegas_init`).

Adaptation follows Lepage: accumulate sum (f J)^2 per bin and dimension, smooth neighbouring
bins, compress with ``((1 - d) / log(1/d))^alpha`` (alpha = 1.5), and move the edges so that
every new bin holds the same share of the compressed weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class VegasGrid:
    """A batch of VEGAS grids on the unit cube, one per condition."""

    def __init__(
        self,
        dims: int,
        n_conditions: int = 1,
        bins: int = 64,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ):
        self.dims = dims
        self.n_conditions = n_conditions
        self.bins = bins
        self.edges = (
            torch.linspace(0, 1, bins + 1, dtype=dtype, device=device).expand(n_conditions, dims, bins + 1).clone()
        )
        self.reset_accumulators()

    def reset_accumulators(self) -> None:
        self.accumulated = torch.zeros(
            self.n_conditions, self.dims, self.bins, dtype=self.edges.dtype, device=self.edges.device
        )

    def _map(self, y: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Uniform y (n, dims) -> r, jacobian dr/dy, bin index (n, dims)."""
        scaled = y * self.bins
        index = scaled.long().clamp(0, self.bins - 1)
        fraction = scaled - index
        edges = self.edges[condition]  # (n, dims, bins+1)
        left = edges.gather(2, index[..., None])[..., 0]
        width = edges.gather(2, index[..., None] + 1)[..., 0] - left
        r = left + fraction * width
        return r, (width * self.bins).prod(dim=1), index

    def sample(
        self, n: int, condition: torch.Tensor | int = 0, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n points r (n, dims) of the given condition(s) and the jacobian dr/dy (n,)."""
        condition = self._conditions(n, condition)
        y = torch.rand((n, self.dims), generator=generator, dtype=self.edges.dtype, device=self.edges.device)
        r, jacobian, _ = self._map(y, condition)
        return r, jacobian

    def density(self, r: torch.Tensor, condition: torch.Tensor | int = 0) -> torch.Tensor:
        """The grid's probability density at r (n, dims): 1 / jacobian."""
        condition = self._conditions(r.shape[0], condition)
        index = self.bin_index(r, condition)
        widths = self.edges.diff(dim=2)[condition].gather(2, index[..., None])[..., 0]
        return 1 / (widths * self.bins).prod(dim=1)

    def bin_index(self, r: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Bin (n, dims) of each coordinate; one flat searchsorted over all grids (offset by 2 per grid)."""
        grid_id = condition[:, None] * self.dims + torch.arange(self.dims, device=r.device)
        flat_edges = self.edges[..., 1:] + 2 * torch.arange(
            self.n_conditions * self.dims, device=r.device, dtype=r.dtype
        ).view(self.n_conditions, self.dims, 1)
        index = torch.searchsorted(flat_edges.reshape(-1), (r + 2 * grid_id).reshape(-1), right=True)
        return (index.view_as(r) - grid_id * self.bins).clamp(0, self.bins - 1)

    def accumulate(self, r: torch.Tensor, condition: torch.Tensor | int, weighted_value: torch.Tensor) -> None:
        """Add (f * jacobian)^2 of the points r to their bins' accumulators."""
        condition = self._conditions(r.shape[0], condition)
        index = self.bin_index(r, condition)
        flat = (condition[:, None] * self.dims + torch.arange(self.dims, device=r.device)) * self.bins + index
        squared = weighted_value.to(self.edges.dtype).square()[:, None].expand_as(flat)
        self.accumulated.view(-1).index_add_(0, flat.reshape(-1), squared.reshape(-1))

    def adapt(self, alpha: float = 1.5) -> None:
        """Move the edges according to the accumulated (f J)^2 (Lepage's smoothing and damping)."""
        d = self.accumulated
        smoothed = torch.empty_like(d)
        smoothed[..., 1:-1] = (d[..., :-2] + d[..., 1:-1] + d[..., 2:]) / 3
        smoothed[..., 0] = (d[..., 0] + d[..., 1]) / 2
        smoothed[..., -1] = (d[..., -2] + d[..., -1]) / 2
        total = smoothed.sum(dim=-1, keepdim=True)
        share = (smoothed / total.clamp(min=torch.finfo(d.dtype).tiny)).clamp(min=1e-300)
        weight = torch.where(share < 1, ((1 - share) / -torch.log(share)) ** alpha, torch.ones_like(share))
        weight = torch.where(total > 0, weight, torch.ones_like(weight))  # nothing seen: keep grid
        cumulative = torch.nn.functional.pad(torch.cumsum(weight, dim=-1), (1, 0))
        cumulative = cumulative / cumulative[..., -1:]
        targets = torch.linspace(0, 1, self.bins + 1, dtype=d.dtype, device=d.device).expand_as(cumulative)
        index = torch.searchsorted(cumulative[..., 1:].contiguous(), targets.contiguous()).clamp(max=self.bins - 1)
        low, high = cumulative.gather(-1, index), cumulative.gather(-1, index + 1)
        fraction = ((targets - low) / (high - low).clamp(min=1e-300)).clamp(0, 1)
        left = self.edges.gather(-1, index)
        new_edges = left + fraction * (self.edges.gather(-1, index + 1) - left)
        new_edges[..., 0], new_edges[..., -1] = 0.0, 1.0
        self.edges = new_edges
        self.reset_accumulators()

    def train(
        self,
        function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        iterations: int = 10,
        points_per_condition: int = 10_000,
        generator: torch.Generator | None = None,
        alpha: float = 1.5,
    ) -> None:
        """Adapt all grids ``iterations`` times; ``function(r, condition)`` returns f (n,) per point."""
        condition = torch.arange(self.n_conditions, device=self.edges.device).repeat_interleave(points_per_condition)
        for _ in range(iterations):
            r, jacobian = self.sample(condition.numel(), condition, generator)
            value = function(r, condition).to(self.edges.dtype)
            value = torch.where(torch.isfinite(value), value, torch.zeros_like(value))
            self.accumulate(r, condition, value * jacobian)
            self.adapt(alpha)

    def _conditions(self, n: int, condition: torch.Tensor | int) -> torch.Tensor:
        if isinstance(condition, int):
            return torch.full((n,), condition, dtype=torch.long, device=self.edges.device)
        return condition.to(self.edges.device)
