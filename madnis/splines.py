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
    return torch.cat((w_u - w_u.mean(dim=-1, keepdim=True), h_u - h_u.mean(dim=-1, keepdim=True), d_u), dim=-1)


def _rq_forward(point, knot, size, derivative, inverse: bool):
    """The RQ formula inside one bin. Returns (image, log|det| of the map applied, saved for backward).

    ``point`` (...) is x (or y for the inverse), ``knot`` (..., 2) = (x_k, y_k) the left knot,
    ``size`` (..., 2) = (w_k, h_k), ``derivative`` (..., 2) = (d_k, d_k+1). Notation: xi = position
    in the bin, s = h/w, q = xi (1 - xi), y = y_k + h N/D with N = s xi^2 + d_k q,
    D = s + (d_k + d_k+1 - 2s) q, and log dy/dx = log(s^2 g / D^2), g = d_k+1 xi^2 + 2 s q + d_k (1 - xi)^2.
    """
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
    saved = (xi, s, c, w, h, d0, d1, q, numerator, denominator, g)
    return out, (-log_det if inverse else log_det), saved


def _rq_backward(saved, grad_out, grad_log_det, inverse: bool):
    """Analytic gradients of :func:`_rq_forward` w.r.t. point, knot, size, derivative.

    The inverse's follow from the implicit function theorem: dxi/dtheta = -(dy/dtheta) / (dy/dxi).
    """
    xi, s, c, w, h, d0, d1, q, numerator, denominator, g = saved
    one_m = 1 - xi
    inv_d = 1 / denominator
    inv_d2 = inv_d * inv_d
    inv_g = 1 / g
    # partial derivatives of y(xi, s, h, d0, d1, y_k) and of log dy/dx (xi, s, d0, d1)
    y_xi = h * s * g * inv_d2
    y_s = h * (xi * xi * denominator - numerator * (1 - 2 * q)) * inv_d2
    y_h = numerator * inv_d
    y_d0 = h * q * (denominator - numerator) * inv_d2
    y_d1 = -h * q * numerator * inv_d2
    l_xi = 2 * (d1 * xi + s * (1 - 2 * xi) - d0 * one_m) * inv_g - 2 * c * (1 - 2 * xi) * inv_d
    l_s = 2 / s + 2 * q * inv_g - 2 * (1 - 2 * q) * inv_d
    l_d0 = one_m * one_m * inv_g - 2 * q * inv_d
    l_d1 = xi * xi * inv_g - 2 * q * inv_d
    if inverse:
        grad_log_det = -grad_log_det
        chain = -(grad_out * w + grad_log_det * l_xi) / y_xi  # total gradient of xi, times dxi/dy_k
        grad_point = -chain
        grad_xk, grad_yk = grad_out, chain
        grad_w = grad_out * xi
        grad_h = chain * y_h
        grad_s = chain * y_s + grad_log_det * l_s
        grad_d0 = chain * y_d0 + grad_log_det * l_d0
        grad_d1 = chain * y_d1 + grad_log_det * l_d1
    else:
        grad_point = (grad_out * y_xi + grad_log_det * l_xi) / w
        grad_xk, grad_yk = -grad_point, grad_out
        grad_w = -grad_point * xi
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
    )


def _locate(x: torch.Tensor, sizes: torch.Tensor, inverse: bool):
    """Bin index (..., 1) of x and the left knots (..., 2) and sizes (..., 2) of that bin.

    ``sizes`` (..., 2, K) stacks widths and heights, each summing to 1.
    """
    left_knots = torch.cumsum(sizes, dim=-1) - sizes
    search = left_knots[..., 1 if inverse else 0, 1:].contiguous()
    index = torch.searchsorted(search, x[..., None].contiguous())
    index2 = index[..., None, :].expand(*sizes.shape[:-1], 1)
    return index, left_knots.gather(-1, index2)[..., 0], sizes.gather(-1, index2)[..., 0]


def _pair(index: torch.Tensor) -> torch.Tensor:
    return torch.cat((index, index + 1), dim=-1)


class _RationalQuadratic(torch.autograd.Function):
    """:func:`_rq_forward` with its analytic backward, for explicitly given bins (:func:`rq_spline`)."""

    @staticmethod
    def forward(ctx, point, knot, size, derivative, inverse: bool):
        out, log_det, saved = _rq_forward(point, knot, size, derivative, inverse)
        ctx.inverse = inverse
        ctx.save_for_backward(*saved)
        return out, log_det

    @staticmethod
    def backward(ctx, grad_out, grad_log_det):
        return (*_rq_backward(ctx.saved_tensors, grad_out, grad_log_det, ctx.inverse), None)


class _UnconstrainedSpline(torch.autograd.Function):
    """The whole spline from network outputs (..., 3K+1) as one autograd node (see :func:`constrain`).

    Forward: exponentials of the width/height logits (clamped at 50, which only a diverged training
    reaches) and their running sums; the bin edges searched are ``k min + scale cumsum / total``, and only
    the located bin's sizes and left knots are normalised (one broadcast pass over the K bins instead of a
    full softmax); softplus only for the two derivatives each point needs; then :func:`_rq_forward`.
    Backward: :func:`_rq_backward`, then through the bin lookup (a left knot is the sum of all sizes
    before it) and the softmax analytically. The softmax gradient ``scale softmax_j (G_j - sum_i softmax_i
    G_i)``, with G_j the gradient of the left knot for bins before the located one and of its size at it,
    is built as a running sum of three scattered entries per row, so no pass broadcasts over the bins
    (such passes cost several times a contiguous one at K ~ 10 on CPUs).
    """

    @staticmethod
    def forward(ctx, x, params, inverse: bool, constants: SplineConstants):
        bins = (params.shape[-1] - 1) // 3
        minimum = params.new_tensor([[constants.min_bin_width], [constants.min_bin_height]])
        scale = 1 - bins * minimum
        exp = params[..., : 2 * bins].clamp(max=50.0).unflatten(-1, (2, bins)).exp_()
        total = exp.sum(dim=-1, keepdim=True)
        cumulative = exp.cumsum(dim=-1)
        unit = scale / total  # (..., 2, 1): the softmax normalisation times ``scale``
        searched = 1 if inverse else 0
        edges = torch.arange(1, bins, dtype=params.dtype, device=params.device) * minimum[searched]
        edges = torch.addcmul(edges, unit[..., searched, :], cumulative[..., searched, :-1])
        x = x.clamp(0.0, 1.0)
        index = torch.searchsorted(edges, x[..., None])
        index2 = index[..., None, :].expand(*exp.shape[:-1], 1)
        exp_k = exp.gather(-1, index2)
        before = cumulative.gather(-1, index2) - exp_k  # unnormalised sum of the sizes before the bin
        size = torch.addcmul(minimum, unit, exp_k)[..., 0]
        knot = torch.addcmul(minimum * index2, unit, before)[..., 0]
        raw_derivative = params[..., 2 * bins :].gather(-1, _pair(index)) + constants.derivative_shift()
        derivative = constants.min_derivative + F.softplus(raw_derivative)
        out, log_det, saved = _rq_forward(x, knot, size, derivative, inverse)
        ctx.inverse, ctx.bins = inverse, bins
        ctx.save_for_backward(index, exp, total, unit, exp_k, before, raw_derivative, *saved)
        return out, log_det

    @staticmethod
    def backward(ctx, grad_out, grad_log_det):
        index, exp, total, unit, exp_k, before, raw_derivative, *saved = ctx.saved_tensors
        grad_x, grad_knot, grad_size, grad_derivative = _rq_backward(saved, grad_out, grad_log_det, ctx.inverse)
        bins = ctx.bins
        grad_knot, grad_size = grad_knot[..., None] * unit, grad_size[..., None] * unit  # (..., 2, 1)
        dot = (grad_knot * before + grad_size * exp_k) / total
        # unit G_j - unit sum_i softmax_i G_i as the running sum of: grad_knot - dot at bin 0,
        # grad_size - grad_knot at the located bin k, -grad_size at k + 1 (a spare column K catches k = K-1)
        steps = exp.new_zeros(*exp.shape[:-1], bins + 1)
        index2 = index[..., None, :].expand(*exp.shape[:-1], 1)
        steps[..., :1] = grad_knot - dot
        steps.scatter_add_(-1, index2, grad_size - grad_knot)
        steps.scatter_add_(-1, index2 + 1, -grad_size)
        grad_params = exp.new_empty(*exp.shape[:-2], 3 * bins + 1)
        torch.mul(exp, steps.cumsum_(dim=-1)[..., :bins], out=grad_params[..., : 2 * bins].unflatten(-1, (2, bins)))
        grad_raw = grad_derivative * torch.sigmoid(raw_derivative)
        grad_params[..., 2 * bins :].zero_().scatter_add_(-1, _pair(index), grad_raw)
        return grad_x, grad_params, None, None


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
    x = x.clamp(0.0, 1.0)
    index, knot, size = _locate(x, torch.stack((widths, heights), dim=-2), inverse)
    return _RationalQuadratic.apply(x, knot, size, derivatives.gather(-1, _pair(index)), inverse)


def rq_spline_unconstrained(
    x: torch.Tensor,
    params: torch.Tensor,
    inverse: bool = False,
    constants: SplineConstants = SplineConstants(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rq_spline` with parameters (..., 3K+1) as output by a network (see :func:`constrain`).

    Same result as ``rq_spline(x, *constrain(params))`` but one autograd node with an analytic
    backward (kernel launches and autograd bookkeeping dominate the cost at batch ~1000 on CPUs).
    """
    return _UnconstrainedSpline.apply(x, params, inverse, constants)
