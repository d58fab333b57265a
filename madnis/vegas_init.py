"""Start a flow from VEGAS grids: bin reduction (arXiv:2311.01548 sec. 2.3) and spline loading.

A VEGAS grid (``bins`` bins of equal probability 1/bins and varying width in r) is a piecewise-
constant density per dimension. The flow's forward map z -> r must reproduce the grid's map
y -> r, so the spline of dimension j gets *input* knots at the grid's cumulative probabilities and
*output* knots at its edges.

1. :func:`reduce_grid` first merges bins too narrow for the spline's minimum bin width/height into
   their most similar neighbour (a grid with 1e-9-wide bins must not give NaN flows), then
   repeatedly merges the two adjacent bins with the most similar density (|log ratio|).
2. :func:`grid_to_spline` turns the reduced grid into RQ-spline knots. A standard RQ spline has
   one derivative per knot, so a density that jumps at a knot cannot be reproduced pointwise (the
   knot derivative would have to equal both slopes). We therefore spend the spline's ``K`` bins on
   ``M = (K + 1) // 2`` reduced grid bins: each grid bin i >= 1 starts with a short *transition*
   bin [z_i, z_i + delta_i] -> [r_i, r_i + s_i delta_i] whose end derivatives are the neighbouring
   slopes s_{i-1}, s_i, followed by a *linear* bin (both derivatives s_i). Consequences, exactly:
   the CDF equals the grid's at every reduced grid edge, and the density equals the grid's
   everywhere outside the transition bins (each as narrow as the minimum bin width/height allow).
   Spare spline bins cut linear bins into equal pieces (still exact) where every piece clears the
   minimum width *and* height; where that is impossible (a very peaked grid), the grid is blended
   with the identity just enough that it is.
3. :func:`init_flow_from_grids` loads the knots into the *last* coupling blocks (walking backwards
   until every dimension is transformed once, following the flow's layouts/permutations); those
   conditioners get zero weights and per-condition output biases = the unconstrained spline
   parameters, all earlier blocks become the identity and soft rotations are reset. In 1D only
   the last block carries the grid (the grid is not applied twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .splines import SplineConstants, unconstrain

if TYPE_CHECKING:
    from .flow import Flow

MARGIN = 1.5  # every spline bin at least MARGIN times the minimum width/height
BLEND_STEPS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)  # blends of a grid with the identity tried in turn (grid_to_spline)


def _log_density(z: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.log(np.diff(z)) - np.log(np.maximum(np.diff(r), 1e-300))


def _merge(z: np.ndarray, r: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge bins i and i+1 (drop their shared edge i+1)."""
    return np.delete(z, i + 1), np.delete(r, i + 1)


def reduce_grid(
    edges: torch.Tensor, n_bins: int, min_width_z: float = 0.0, min_width_r: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce one VEGAS grid (its bins+1 edges in r, equal probabilities) to at most ``n_bins`` bins.

    Returns the reduced edges in z (cumulative probability) and r. Bins narrower than
    ``min_width_z``/``min_width_r`` are merged into their neighbour of most similar density first.
    """
    r = edges.detach().double().cpu().numpy().copy()
    z = np.linspace(0.0, 1.0, r.size)
    while z.size > 2:
        narrowness = np.maximum(min_width_z / np.diff(z), min_width_r / np.maximum(np.diff(r), 1e-300))
        i = int(np.argmax(narrowness))
        if narrowness[i] < 1:
            break
        if i == 0 or i == z.size - 2:
            z, r = _merge(z, r, 0 if i == 0 else i - 1)
            continue
        log_rho = _log_density(z, r)
        left_gap, right_gap = abs(log_rho[i] - log_rho[i - 1]), abs(log_rho[i + 1] - log_rho[i])
        z, r = _merge(z, r, i - 1 if left_gap < right_gap else i)
    while z.size - 1 > n_bins:
        z, r = _merge(z, r, int(np.argmin(np.abs(np.diff(_log_density(z, r))))))
    return torch.from_numpy(z), torch.from_numpy(r)


@dataclass
class SplineKnots:
    """Knots of one RQ spline z -> r, and which of its bins are exactly linear."""

    z: torch.Tensor  # (K+1,) input knots
    r: torch.Tensor  # (K+1,) output knots
    derivatives: torch.Tensor  # (K+1,)
    linear: torch.Tensor  # (K,) bool

    def parameters(self, constants: SplineConstants) -> torch.Tensor:
        """The unconstrained (3K+1,) parameters reproducing this spline."""
        return unconstrain(self.z.diff(), self.r.diff(), self.derivatives, constants)


def _grid_knots(
    z_grid: torch.Tensor, r_grid: torch.Tensor, bins: int, min_w: float, min_h: float
) -> SplineKnots | None:
    """Knots of a ``bins``-bin spline reproducing the reduced grid (z_grid, r_grid), or None when the
    spare bins cannot be spent exactly (no linear bin splits into pieces all above ``min_w``/``min_h``)."""
    slopes = r_grid.diff() / z_grid.diff()
    z, r, d, linear = [0.0], [0.0], [float(slopes[0])], []
    for i, slope in enumerate(slopes.tolist()):
        if i > 0:  # transition bin: derivative from the previous slope to this one, mean slope = slope
            delta = max(min_w, min_h / slope)
            z.append(float(z_grid[i]) + delta)
            r.append(float(r_grid[i]) + slope * delta)
            d.append(slope)
            linear.append(False)
        z.append(float(z_grid[i + 1]))
        r.append(float(r_grid[i + 1]))
        d.append(slope)
        linear.append(True)
    # Spare bins cut linear bins into equal pieces (exact). A piece must clear the minimum in z *and* in
    # r: a linear bin wide in z can be narrow in r, so the capacity of bin k is how many pieces it allows.
    capacity = [
        min((z[k + 1] - z[k]) / min_w, (r[k + 1] - r[k]) / min_h) if linear[k] else 0.0 for k in range(len(linear))
    ]
    pieces = [1] * len(linear)
    for _ in range(bins - len(linear)):
        k = max(range(len(linear)), key=lambda k: capacity[k] / (pieces[k] + 1))
        if capacity[k] < pieces[k] + 1:
            return None
        pieces[k] += 1
    knots: list[tuple[float, float, float]] = [(z[0], r[0], d[0])]
    is_linear: list[bool] = []
    for k, n in enumerate(pieces):
        for j in range(1, n + 1):
            t = j / n
            knots.append((z[k] + t * (z[k + 1] - z[k]), r[k] + t * (r[k + 1] - r[k]), d[k + 1]))
            is_linear.append(linear[k])
    z_t, r_t, d_t = (torch.tensor(values, dtype=torch.float64) for values in zip(*knots))
    z_t[-1] = r_t[-1] = 1.0
    return SplineKnots(z_t, r_t, d_t, torch.tensor(is_linear))


def grid_to_spline(edges: torch.Tensor, bins: int, constants: SplineConstants = SplineConstants()) -> SplineKnots:
    """One VEGAS grid (edges in r) -> knots of a ``bins``-bin RQ spline reproducing it (see module doc).

    Exact when the spare spline bins fit (:func:`_grid_knots`). When they do not (a grid so peaked
    that too few bins can clear the minimum height in its dense region and the minimum width in the
    rest), the reduced grid's map is blended with the identity, (z, r) -> (1 - eps) (z, r) + eps (z + r) / 2,
    with the smallest eps of :data:`BLEND_STEPS` that fits: the nearest representable spline on the
    way to the identity (eps = 1), which always fits.
    """
    min_w, min_h = MARGIN * constants.min_bin_width, MARGIN * constants.min_bin_height
    z_grid, r_grid = reduce_grid(edges, (bins + 1) // 2, 2 * min_w, 2 * min_h)
    for eps in BLEND_STEPS:
        diagonal = (z_grid + r_grid) / 2
        knots = _grid_knots(
            (1 - eps) * z_grid + eps * diagonal, (1 - eps) * r_grid + eps * diagonal, bins, min_w, min_h
        )
        if knots is not None:
            return knots
    raise ValueError(f"a {bins}-bin spline cannot have every bin wider than {min_w} and higher than {min_h}")


def grid_blocks(flow: Flow) -> dict[int, list[int]]:
    """For the last blocks that together transform every dimension once: block -> its positions
    (within the block's transformed part) that carry the grid, found walking backwards."""
    covered: set[int] = set()
    assignment: dict[int, list[int]] = {}
    for b in reversed(range(len(flow.blocks))):
        n_cond = flow.blocks[b].n_cond
        transformed = flow.layouts[b][n_cond:].tolist()
        assignment[b] = [p for p, dim in enumerate(transformed) if dim not in covered]
        covered.update(transformed)
        if len(covered) == flow.dims:
            return assignment
    raise ValueError(
        f"the flow's blocks never transform dimensions {sorted(set(range(flow.dims)) - covered)}: "
        "cannot load VEGAS grids"
    )


def init_flow_from_grids(flow: Flow, grids: torch.Tensor) -> None:
    """Make ``flow`` reproduce the VEGAS grids (n_conditions, dims, n_grid_bins+1), see module doc."""
    expected = (flow.n_conditions, flow.dims)
    if grids.dim() != 3 or tuple(grids.shape[:2]) != expected:
        raise ValueError(
            f"VEGAS grids must have shape (n_conditions, dims, bins+1) = {expected + ('*',)}, got {tuple(grids.shape)}"
        )
    n_params = 3 * flow.bins + 1
    params = torch.stack(
        [
            torch.stack(
                [
                    grid_to_spline(grids[c, j], flow.bins, flow.constants).parameters(flow.constants)
                    for j in range(flow.dims)
                ]
            )
            for c in range(flow.n_conditions)
        ]
    )  # (n_conditions, dims, 3K+1)
    assignment = grid_blocks(flow)
    for b, block in enumerate(flow.blocks):
        output = torch.zeros(flow.n_conditions, block.n_transformed, n_params, dtype=torch.float64)
        for p in assignment.get(b, []):
            output[:, p] = params[:, int(flow.layouts[b][block.n_cond + p])]
        bias = block.conditioner.biases[-1]
        block.conditioner.set_constant_output(output.flatten(1).to(bias.dtype).to(bias.device))
    for mixer in flow.mixers:
        if mixer.rotation is not None:
            mixer.rotation.reset()
