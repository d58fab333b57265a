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


class _RationalQuadratic(torch.autograd.Function):
    """The RQ formula inside one bin, with an analytic backward (several times fewer kernels than autograd).

    Inputs: ``point`` (...) (x, or y for the inverse), ``knot`` (..., 2) = (x_k, y_k) left knot,
    ``size`` (..., 2) = (w_k, h_k), ``derivative`` (..., 2) = (d_k, d_k+1). Outputs the image and
    log|det| of the map applied. Notation: xi = position in the bin, s = h/w,
    y = y_k + h N/D with N = s xi^2 + d_k q, D = s + (d_k + d_k+1 - 2s) q, q = xi (1 - xi), and
    log dy/dx = 2 log s + log g - 2 log D with g = d_k+1 xi^2 + 2 s q + d_k (1 - xi)^2.
    The inverse's gradients follow from the implicit function theorem.
    """

    @staticmethod
    def forward(ctx, point, knot, size, derivative, inverse: bool):
        x_k, y_k = knot.unbind(-1)
        w, h = size.unbind(-1)
        d0, d1 = derivative.unbind(-1)
        s = h / w
        c = d0 + d1 - 2 * s
        if inverse:
            dy = point - y_k
            a = torch.addcmul(h * (s - d0), dy, c)
            b = torch.addcmul(h * d0, dy, c, value=-1)
            cc = -s * dy
            discriminant = (b * b - 4 * a * cc).clamp(min=0.0)
            xi = (2 * cc / (-b - torch.sqrt(discriminant))).clamp(0.0, 1.0)
            out = torch.addcmul(x_k, xi, w)
        else:
            xi = ((point - x_k) / w).clamp(0.0, 1.0)
        one_m = 1 - xi
        q = xi * one_m
        denominator = torch.addcmul(s, c, q)
        numerator = torch.addcmul(s * xi * xi, d0, q)
        if not inverse:
            out = torch.addcmul(y_k, h, numerator / denominator)
        g = d1 * xi * xi + 2 * s * q + d0 * one_m * one_m
        log_det = torch.log(s * s * g / (denominator * denominator))
        ctx.inverse = inverse
        ctx.save_for_backward(xi, s, c, w, h, d0, d1, q, numerator, denominator, g)
        return out, (-log_det if inverse else log_det)

    @staticmethod
    def backward(ctx, grad_out, grad_log_det):
        xi, s, c, w, h, d0, d1, q, numerator, denominator, g = ctx.saved_tensors
        one_m = 1 - xi
        inv_d = 1 / denominator
        inv_d2 = inv_d * inv_d
        inv_g = 1 / g
        # partial derivatives of y(xi, s, h, d0, d1, y_k) and log_det(xi, s, d0, d1)
        y_xi = h * s * g * inv_d2
        y_s = h * (xi * xi * denominator - numerator * (1 - 2 * q)) * inv_d2
        y_h = numerator * inv_d
        y_d0 = h * q * (denominator - numerator) * inv_d2
        y_d1 = -h * q * numerator * inv_d2
        l_xi = 2 * (d1 * xi + s * (1 - 2 * xi) - d0 * one_m) * inv_g - 2 * c * (1 - 2 * xi) * inv_d
        l_s = 2 / s + 2 * q * inv_g - 2 * (1 - 2 * q) * inv_d
        l_d0 = one_m * one_m * inv_g - 2 * q * inv_d
        l_d1 = xi * xi * inv_g - 2 * q * inv_d
        if ctx.inverse:
            grad_log_det = -grad_log_det
            grad_xi = grad_out * w + grad_log_det * l_xi  # xi's total gradient, then xi = xi(y, ...)
            chain = -grad_xi / y_xi
            grad_point = -chain
            grad_yk = chain
            grad_h = chain * y_h
            grad_s = chain * y_s + grad_log_det * l_s
            grad_d0 = chain * y_d0 + grad_log_det * l_d0
            grad_d1 = chain * y_d1 + grad_log_det * l_d1
            grad_xk = grad_out
            grad_w = grad_out * xi
        else:
            grad_xi = grad_out * y_xi + grad_log_det * l_xi
            grad_point = grad_xi / w
            grad_xk = -grad_point
            grad_w = -grad_point * xi
            grad_yk = grad_out
            grad_h = grad_out * y_h
            grad_s = grad_out * y_s + grad_log_det * l_s
            grad_d0 = grad_out * y_d0 + grad_log_det * l_d0
            grad_d1 = grad_out * y_d1 + grad_log_det * l_d1
        grad_h = grad_h + grad_s / w  # s = h / w
        grad_w = grad_w - grad_s * s / w
        return (
            grad_point,
            torch.stack((grad_xk, grad_yk), dim=-1),
            torch.stack((grad_w, grad_h), dim=-1),
            torch.stack((grad_d0, grad_d1), dim=-1),
            None,
        )


def _evaluate(
    x: torch.Tensor,
    sizes: torch.Tensor,
    derivatives_at: Callable[[torch.Tensor], torch.Tensor],
    inverse: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Core of the spline: ``sizes`` (..., 2, K) stacks widths and heights (each summing to 1).

    ``derivatives_at(index)`` returns (..., 2) the derivatives at the left and right knot of bin
    ``index``, so that only two derivatives per point are computed, not K + 1.
    """
    left_knots = torch.cumsum(sizes, dim=-1) - sizes
    x = x.clamp(0.0, 1.0)
    search = left_knots[..., 1 if inverse else 0, 1:].contiguous()
    index = torch.searchsorted(search, x[..., None].contiguous())
    index2 = index[..., None, :].expand(*sizes.shape[:-1], 1)
    knot = left_knots.gather(-1, index2)[..., 0]
    size = sizes.gather(-1, index2)[..., 0]
    return _RationalQuadratic.apply(x, knot, size, derivatives_at(index), inverse)


def _pick_pair(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values at index and index + 1, stacked (..., 2)."""
    return values.gather(-1, torch.cat((index, index + 1), dim=-1))


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
    # softmax by hand (faster on CPU for K ~ 10); logits above 50 only occur in a diverged training
    exp = torch.exp(params[..., : 2 * bins].unflatten(-1, (2, bins)).clamp(max=50.0))
    sizes = torch.addcdiv(minimum, exp, exp.sum(dim=-1, keepdim=True) / (1 - bins * minimum))

    def derivatives_at(index: torch.Tensor) -> torch.Tensor:
        return constants.min_derivative + F.softplus(_pick_pair(params[..., 2 * bins :], index) + constants.derivative_shift())

    return _evaluate(x, sizes, derivatives_at, inverse)
