"""Rational-quadratic (RQ) splines on [0, 1] (Durkan et al., arXiv:1906.04032).

A monotone spline with ``K`` bins is given by ``K`` bin widths, ``K`` bin heights and ``K + 1``
knot derivatives, including the two boundary derivatives (learnable here, unlike the original
paper's fixed 1). The coupling networks output *unconstrained* parameters; :func:`constrain`
turns them into widths/heights (softmax with a minimum) and derivatives (shifted softplus with a
minimum) so that all-zero parameters give the identity (uniform bins, derivative 1).
:func:`unconstrain` is its exact inverse, used to initialise a flow from a VEGAS grid.
Forward and inverse are both analytic, with their log-Jacobians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


@dataclass(frozen=True)
class SplineConstants:
    """Lower bounds keeping every bin and slope away from zero (numerical stability)."""

    min_bin_width: float = MIN_BIN_WIDTH
    min_bin_height: float = MIN_BIN_HEIGHT
    min_derivative: float = MIN_DERIVATIVE

    def derivative_shift(self) -> float:
        """Shift s with min_derivative + softplus(0 + s) = 1, so zero parameters give slope 1."""
        return math.log(math.expm1(1.0 - self.min_derivative))


def constrain(
    params: torch.Tensor, bins: int, constants: SplineConstants = SplineConstants()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unconstrained (..., 3K+1) -> widths (..., K), heights (..., K), derivatives (..., K+1)."""
    w_u, h_u, d_u = params.split((bins, bins, bins + 1), dim=-1)
    widths = constants.min_bin_width + (1 - bins * constants.min_bin_width) * torch.softmax(w_u, dim=-1)
    heights = constants.min_bin_height + (1 - bins * constants.min_bin_height) * torch.softmax(h_u, dim=-1)
    derivatives = constants.min_derivative + F.softplus(d_u + constants.derivative_shift())
    return widths, heights, derivatives


def unconstrain(
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    constants: SplineConstants = SplineConstants(),
) -> torch.Tensor:
    """Inverse of :func:`constrain`: (..., 3K+1) parameters reproducing the given spline.

    Widths/heights must each sum to 1 and exceed the minimum; derivatives must exceed theirs.
    """
    bins = widths.shape[-1]
    if (widths <= constants.min_bin_width).any() or (heights <= constants.min_bin_height).any():
        raise ValueError("spline bins must be wider/higher than the minimum bin width/height")
    if (derivatives <= constants.min_derivative).any():
        raise ValueError("spline derivatives must exceed the minimum derivative")
    w_u = torch.log((widths - constants.min_bin_width) / (1 - bins * constants.min_bin_width))
    h_u = torch.log((heights - constants.min_bin_height) / (1 - bins * constants.min_bin_height))
    d = derivatives - constants.min_derivative
    # inverse softplus, stable for large d: log(expm1(d)) = d + log(1 - exp(-d))
    d_u = d + torch.log(-torch.expm1(-d)) - constants.derivative_shift()
    return torch.cat(
        (w_u - w_u.mean(dim=-1, keepdim=True), h_u - h_u.mean(dim=-1, keepdim=True), d_u), dim=-1
    )


def _evaluate(
    x: torch.Tensor,
    sizes: torch.Tensor,
    derivatives_at: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    inverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Core of the spline: ``sizes`` (..., 2, K) stacks widths and heights (each summing to 1).

    ``derivatives_at(index)`` returns the derivatives at the left and right knot of bin ``index``,
    so that only two derivatives per point are computed, not K + 1.
    """
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots[..., -1] = 1.0
    x = x.clamp(0.0, 1.0)
    search = knots[..., 1 if inverse else 0, 1:-1].contiguous()
    index = torch.searchsorted(search, x[..., None].contiguous())
    index2 = index[..., None, :].expand(*sizes.shape[:-1], 1)
    x_k, y_k = knots.gather(-1, index2).unbind(-2)
    w_k, h_k = sizes.gather(-1, index2).unbind(-2)
    x_k, y_k, w_k, h_k = x_k[..., 0], y_k[..., 0], w_k[..., 0], h_k[..., 0]
    d_k, d_k1 = derivatives_at(index)
    slope = h_k / w_k
    curvature = d_k + d_k1 - 2 * slope

    if inverse:
        dy = x - y_k
        a = h_k * (slope - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -slope * dy
        discriminant = (b * b - 4 * a * c).clamp(min=0.0)
        xi = (2 * c / (-b - torch.sqrt(discriminant))).clamp(0.0, 1.0)
        out = x_k + xi * w_k
    else:
        xi = ((x - x_k) / w_k).clamp(0.0, 1.0)
    xi_1m = xi * (1 - xi)
    denominator = slope + curvature * xi_1m
    if not inverse:
        out = y_k + h_k * (slope * xi * xi + d_k * xi_1m) / denominator
    derivative_numerator = slope * slope * (d_k1 * xi * xi + 2 * slope * xi_1m + d_k * (1 - xi) ** 2)
    log_det = torch.log(derivative_numerator / (denominator * denominator))
    return out, (-log_det if inverse else log_det)


def _pick_pair(values: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pair = values.gather(-1, torch.cat((index, index + 1), dim=-1))
    return pair[..., 0], pair[..., 1]


def rq_spline(
    x: torch.Tensor,
    widths: torch.Tensor,
    heights: torch.Tensor,
    derivatives: torch.Tensor,
    inverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the monotone RQ spline (or its inverse) elementwise.

    Args:
        x: (...) points in [0, 1].
        widths, heights: (..., K) bin sizes in input/output, each summing to 1.
        derivatives: (..., K+1) positive knot derivatives dy/dx.
        inverse: evaluate the inverse map y -> x.
    Returns:
        y (...) and log|dy/dx| (...) of the map applied (for the inverse: log|dx/dy|).
    """
    sizes = torch.stack((widths, heights), dim=-2)
    return _evaluate(x, sizes, lambda index: _pick_pair(derivatives, index), inverse)


def rq_spline_unconstrained(
    x: torch.Tensor,
    params: torch.Tensor,
    inverse: bool = False,
    constants: SplineConstants = SplineConstants(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rq_spline` with parameters (..., 3K+1) as output by a network (see :func:`constrain`).

    Same result as ``rq_spline(x, *constrain(params))``, but computes the softplus only for the two
    derivatives each point needs (transcendental functions dominate the cost on CPUs).
    """
    bins = (params.shape[-1] - 1) // 3
    minimum = params.new_tensor([[constants.min_bin_width], [constants.min_bin_height]])
    sizes = minimum + (1 - bins * minimum) * torch.softmax(params[..., : 2 * bins].unflatten(-1, (2, bins)), dim=-1)

    def derivatives_at(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d_k, d_k1 = _pick_pair(params[..., 2 * bins :], index)
        pair = constants.min_derivative + F.softplus(torch.stack((d_k, d_k1)) + constants.derivative_shift())
        return pair[0], pair[1]

    return _evaluate(x, sizes, derivatives_at, inverse)
