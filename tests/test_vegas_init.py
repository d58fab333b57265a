"""VEGAS grid adaptation, bin reduction and loading VEGAS grids into the flow's splines."""

import pytest
import torch

from madnis.flow import Flow
from madnis.vegas import VegasGrid
from madnis.vegas_init import MARGIN, grid_to_spline, reduce_grid


def peak(r: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    centre = 0.25 + 0.25 * condition[:, None]
    return torch.exp(-((r - centre) ** 2).sum(dim=1) / (2 * 0.05**2))


def relative_std(grid: VegasGrid, condition: int) -> float:
    r, jacobian = grid.sample(20_000, condition, torch.Generator().manual_seed(9))
    weights = peak(r, torch.full((len(r),), condition)) * jacobian
    return float(weights.std() / weights.mean())


@pytest.mark.parametrize("dims", (1, 2))
def test_vegas_adaptation_reduces_variance(dims):
    grid = VegasGrid(dims, n_conditions=2)
    before = [relative_std(grid, c) for c in range(2)]
    grid.train(peak, iterations=8, points_per_condition=4000, generator=torch.Generator().manual_seed(2))
    after = [relative_std(grid, c) for c in range(2)]
    assert all(a < 0.25 * b for a, b in zip(after, before)), (before, after)
    assert torch.all(grid.edges.diff(dim=-1) > 0)


def test_vegas_density_is_inverse_jacobian():
    grid = VegasGrid(3, 2)
    grid.train(peak, iterations=3, points_per_condition=2000)
    condition = torch.tensor([0, 1, 1, 0])
    r, jacobian = grid.sample(4, condition)
    assert torch.allclose(grid.density(r, condition) * jacobian, torch.ones(4, dtype=torch.float64))


def piecewise_grid(slopes_r: list[float], bins: int = 64) -> torch.Tensor:
    """Edges of a VEGAS grid whose density is constant on each of len(slopes_r) blocks of bins."""
    per_block = bins // len(slopes_r)
    widths = torch.cat([torch.full((per_block,), s, dtype=torch.float64) for s in slopes_r])
    return torch.nn.functional.pad(torch.cumsum(widths / widths.sum(), 0), (1, 0))


def test_bin_reduction_keeps_k_bins_and_merges_most_similar_slopes():
    edges = piecewise_grid([1.0, 1.1, 5.0, 9.0], bins=4)  # 4 bins with slopes 1, 1.1, 5, 9
    z, r = reduce_grid(edges, 3)
    assert len(z) == 4
    expected = torch.tensor([0.0, 2.1, 7.1, 16.1], dtype=torch.float64) / 16.1
    assert torch.allclose(r, expected)  # bins 0 and 1 (slopes 1 and 1.1) merged
    z2, r2 = reduce_grid(edges, 2)
    assert torch.allclose(r2, torch.tensor([0.0, 2.1, 16.1], dtype=torch.float64) / 16.1)  # then 5 and 9
    z64, _ = reduce_grid(VegasGrid(1).edges[0, 0], 10)
    assert len(z64) == 11


def reduced_grid_density(flow: Flow, grids: torch.Tensor, r: torch.Tensor, condition: torch.Tensor):
    """Density of the reduced grids at r, and whether r avoids every transition bin."""
    density = torch.ones(len(r), dtype=torch.float64)
    usable = torch.ones(len(r), dtype=torch.bool)
    for c in range(grids.shape[0]):
        mask = condition == c
        for j in range(grids.shape[1]):
            knots = grid_to_spline(grids[c, j], flow.bins, flow.constants)
            index = (torch.searchsorted(knots.r, r[mask, j], right=True) - 1).clamp(0, flow.bins - 1)
            density[mask] *= (knots.z.diff() / knots.r.diff())[index]
            usable[mask] &= knots.linear[index]
    return density, usable


@pytest.mark.parametrize(
    "dims,kind,per_condition",
    [(1, "log", False), (1, "exchange", True), (4, "log", False), (4, "soft", True), (4, "exchange", False)],
)
def test_initial_flow_density_equals_vegas_grid_density(dims, kind, per_condition):
    n_conditions = 3
    grid = VegasGrid(dims, n_conditions)
    grid.train(peak, iterations=6, points_per_condition=3000, generator=torch.Generator().manual_seed(1))
    for dtype, tolerance in ((torch.float64, 1e-3), (torch.float32, 1e-3)):
        flow = Flow(dims, n_conditions, permutations=kind, per_condition=per_condition).to(dtype)
        flow.init_from_grids(grid.edges)
        generator = torch.Generator().manual_seed(4)
        r = torch.rand(4000, dims, generator=generator, dtype=torch.float64)
        condition = torch.randint(0, n_conditions, (4000,), generator=generator)
        expected, usable = reduced_grid_density(flow, grid.edges, r, condition)
        density = flow.log_prob(r.to(dtype), condition).double().exp()
        assert usable.float().mean() > 0.8
        assert ((density / expected - 1)[usable]).abs().max() < tolerance
    # reduction of a grid that is already piecewise constant on <= (K+1)/2 pieces is lossless:
    # the flow density equals the original grid density
    pieces = torch.stack(
        [
            torch.stack([piecewise_grid([1.0, 4.0, 0.5, 2.0][c:] + [3.0] * c) for _ in range(dims)])
            for c in range(n_conditions)
        ]
    )
    flow = Flow(dims, n_conditions, permutations=kind, per_condition=per_condition).double()
    flow.init_from_grids(pieces)
    exact = VegasGrid(dims, n_conditions)
    exact.edges = pieces
    _, usable = reduced_grid_density(flow, pieces, r, condition)
    ratio = flow.log_prob(r, condition).exp() / exact.density(r, condition)
    assert ((ratio - 1)[usable]).abs().max() < 1e-6


def test_cdf_equals_grid_at_reduced_edges():
    grid = VegasGrid(2, 2)
    grid.train(peak, iterations=6, points_per_condition=3000, generator=torch.Generator().manual_seed(1))
    flow = Flow(2, 2).double()
    flow.init_from_grids(grid.edges)
    for c in range(2):
        for j in range(2):
            minimum = 2 * MARGIN * flow.constants.min_bin_width  # what grid_to_spline asks for
            z_edges, r_edges = reduce_grid(grid.edges[c, j], (flow.bins + 1) // 2, minimum, minimum)
            knots = grid_to_spline(grid.edges[c, j], flow.bins, flow.constants)
            assert all(torch.isclose(knots.r, edge).any() for edge in r_edges)  # edges are knots
            points = torch.full((len(r_edges), 2), 0.5, dtype=torch.float64)
            points[:, j] = r_edges
            z, _ = flow.inverse(points, torch.full((len(r_edges),), c))
            assert torch.allclose(z[:, j], z_edges, atol=1e-6)


def test_1d_grid_is_applied_once_not_twice():
    edges = piecewise_grid([1.0, 8.0])  # probability 1/2 on [0, 1/9) and on [1/9, 1)
    flow = Flow(1, 1)
    flow.init_from_grids(edges[None, None])
    r = torch.tensor([[0.05], [0.5]])
    density = flow.log_prob(r).exp()
    assert torch.allclose(density, torch.tensor([4.5, 0.5625]), rtol=1e-5)  # twice would be 20.25, 0.316


def test_flow_whose_blocks_miss_a_dimension_refuses_grids():
    flow = Flow(4, 1, blocks=1, permutations="exchange")
    with pytest.raises(ValueError, match="never transform dimensions"):
        flow.init_from_grids(VegasGrid(4).edges)


def test_grid_with_tiny_bins_gives_finite_flow():
    edges = VegasGrid(1).edges[0, 0].clone()
    edges[10:30] = edges[10] + torch.arange(20, dtype=torch.float64) * 1e-9  # 19 bins 1e-9 wide
    edges[30:] = torch.linspace(float(edges[29]) + 1e-9, 1.0, 35, dtype=torch.float64)
    assert edges.diff().min() < 2e-9
    grids = edges[None, None].expand(2, 3, -1).contiguous()
    flow = Flow(3, 2)
    flow.init_from_grids(grids)
    r = torch.rand(5000, 3)
    condition = torch.randint(0, 2, (5000,))
    log_q = flow.log_prob(r, condition)
    z, log_det = flow.forward(torch.rand(5000, 3), condition)
    assert torch.isfinite(log_q).all() and torch.isfinite(log_det).all() and torch.isfinite(z).all()
    assert log_q.exp().max() > 10  # the dense region is still dense


@pytest.mark.parametrize("bins,exact", [(8, True), (10, True), (16, False)])
def test_grid_dense_near_a_face_loads_with_every_bin_above_the_minimum(bins, exact):
    """Regression: a channel cut to r < 0.01 (VEGAS puts 63 of 64 bins in [0, 0.007]) reduces to a bin
    wide in z but narrow in r; the spare spline bins once halved it below the minimum height (ValueError).
    With 16 bins no spline clearing the minima reproduces the grid (at most 4 bins fit in r < 0.007, 10
    in z > 63/64): the grid is blended towards the identity, and the dense region stays dense."""
    edges = torch.cat((torch.linspace(0.0, 0.007, 64, dtype=torch.float64), torch.ones(1, dtype=torch.float64)))
    flow = Flow(1, 1, bins=bins).double()
    knots = grid_to_spline(edges, bins, flow.constants)
    assert len(knots.linear) == bins
    assert knots.z.diff().min() >= MARGIN * flow.constants.min_bin_width * (1 - 1e-9)
    assert knots.r.diff().min() >= MARGIN * flow.constants.min_bin_height * (1 - 1e-9)
    flow.init_from_grids(edges[None, None])
    density = flow.log_prob(torch.tensor([[0.003], [0.5]], dtype=torch.float64)).exp()
    grid_density = torch.tensor([63 / 64 / 0.007, 1 / 64 / 0.993], dtype=torch.float64)
    if exact:
        assert torch.allclose(density, grid_density, rtol=1e-6)
    else:
        assert density[0] > 0.5 * grid_density[0] and density[1] < 2 * grid_density[1]
