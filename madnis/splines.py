"""Rational-quadratic (RQ) splines on [0, 1] (Durkan et al., arXiv:1906.04032).

A monotone spline with ``K`` bins is given by ``K`` bin widths, ``K`` bin heights and ``K + 1``
knot derivatives, including the two boundary derivatives (learnable here, unlike the original
paper's fixed 1). The coupling networks output *unconstrained* parameters; :func:`constrain`
turns them into widths/heights (softmax with a minimum) and derivatives (an exponential above a
minimum) so that all-zero parameters give the identity (uniform bins, derivative 1).

Why exponential derivatives, not the usual softplus: a trained ``g g > w+ d u~ g`` sampler's largest
weights sit within 1e-3 of a cube face, where f J peaks and the density needs a knot derivative of
hundreds or more; softplus grows only linearly in its input (and its gradient stays 1), an exponential
reaches it in a few units of the network's output. Measured (``benchmarks/results/wjj_ablation_derivatives.md``):
on the 4D toy at 1000 steps sigma/I 0.143 against 0.166 and efficiency 0.694 against 0.624 (3 seeds); on a W+2j
channel part at 400 fixed steps within the seeds' heavy-tailed spread (14 seeds); whole W+2j launches at 10k events
unweighted at 1.57 % against 1.26 % (6 seeds). The exponent is capped at ``MAX_LOG_DERIVATIVE`` (a slope of
e^20 is far beyond any sampler; the cap only guards a diverged training).

:func:`unconstrain` is the exact inverse of :func:`constrain`, used to initialise a flow from a VEGAS grid.
Forward and inverse are both analytic, with their log-Jacobians.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
MAX_LOG_DERIVATIVE = 20.0  # the derivatives' exponent is capped here (module docstring)


@dataclass(frozen=True)
class SplineConstants:
    """Lower bounds keeping every bin and slope away from zero (numerical stability)."""

    min_bin_width: float = MIN_BIN_WIDTH
    min_bin_height: float = MIN_BIN_HEIGHT
    min_derivative: float = MIN_DERIVATIVE

    def derivative(self, raw: torch.Tensor) -> torch.Tensor:
        """Knot derivatives min + (1 - min) exp(raw) (raw capped at MAX_LOG_DERIVATIVE): slope 1 at raw = 0."""
        return self.min_derivative + (1 - self.min_derivative) * raw.clamp(max=MAX_LOG_DERIVATIVE).exp()


def constrain(
    params: torch.Tensor, bins: int, constants: SplineConstants = SplineConstants()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unconstrained (..., 3K+1) -> widths (..., K), heights (..., K), derivatives (..., K+1)."""
    w_u, h_u, d_u = params.split((bins, bins, bins + 1), dim=-1)
    widths = constants.min_bin_width + (1 - bins * constants.min_bin_width) * torch.softmax(w_u, dim=-1)
    heights = constants.min_bin_height + (1 - bins * constants.min_bin_height) * torch.softmax(h_u, dim=-1)
    derivatives = constants.derivative(d_u)
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
    d_u = torch.log((derivatives - constants.min_derivative) / (1 - constants.min_derivative))
    return torch.cat((w_u - w_u.mean(dim=-1, keepdim=True), h_u - h_u.mean(dim=-1, keepdim=True), d_u), dim=-1)


def _rq_forward(point, x_k, y_k, w, h, d0, d1, inverse: bool):
    """The RQ formula inside one bin. Returns (image, log|det| of the map applied, saved for backward).

    ``point`` (...) is x (or y for the inverse), ``(x_k, y_k)`` the left knot, ``(w, h)`` the bin's width
    and height, ``(d0, d1)`` the knot derivatives at its edges, all (...). Notation: xi = position in the
    bin, s = h/w, q = xi (1 - xi), y = y_k + h R with R = N/D, N = s xi^2 + d0 q,
    D = s + (d0 + d1 - 2s) q, and log dy/dx = log(s^2 g / D^2), g = d1 xi^2 + 2 s q + d0 (1 - xi)^2.
    """
    s = h / w
    c = torch.add(d0 + d1, s, alpha=-2)
    if inverse:
        # xi solves a xi^2 + b xi - e = 0 (e = s dy); the root 2e / (b + sqrt(b^2 + 4ae)) is stable
        dy = point - y_k
        a = torch.addcmul(h * (s - d0), dy, c)
        b = torch.addcmul(h * d0, dy, c, value=-1)
        e = s * dy
        discriminant = torch.addcmul(b * b, a, e, value=4).clamp_(min=0.0)
        xi = (2 * e / (b + torch.sqrt(discriminant))).clamp_(0.0, 1.0)
        out = torch.addcmul(x_k, xi, w)
    else:
        xi = ((point - x_k) / w).clamp_(0.0, 1.0)
    xi2 = xi * xi
    om = 1 - xi
    om2 = om * om
    q = xi * om
    denominator = torch.addcmul(s, c, q)
    ratio = torch.addcmul(s * xi2, d0, q) / denominator
    if not inverse:
        out = torch.addcmul(y_k, h, ratio)
    g = torch.addcmul(torch.addcmul(d1 * xi2, s, q, value=2), d0, om2)
    slope = s / denominator
    log_det = torch.log(slope * slope * g)
    saved = (xi, xi2, om, om2, q, s, c, w, h, d0, d1, ratio, denominator, g)
    return out, (log_det.neg_() if inverse else log_det), saved


def _rq_backward(saved, grad_out, grad_log_det, inverse: bool):
    """Analytic gradients of :func:`_rq_forward` w.r.t. point, x_k, y_k, w, h, d0, d1.

    Reverse mode through the formulas of :func:`_rq_forward` (y = y_k + h R, log dy/dx = 2 log s + log g
    - 2 log D). The inverse's follow from the implicit function theorem, dxi/dtheta = -(dy/dtheta) /
    (dy/dxi): the same reverse pass, seeded with the total gradient of xi times -1/(dy/dxi).
    """
    xi, xi2, om, om2, q, s, c, w, h, d0, d1, ratio, denominator, g = saved
    if inverse:
        grad_log = -grad_log_det
        one_m_2xi = om - xi
        d_log_dxi = 2 * (torch.addcmul(torch.addcmul(d1 * xi, s, one_m_2xi), d0, om, value=-1) / g) - 2 * (
            c * one_m_2xi / denominator
        )
        dy_dxi = h * s * g / (denominator * denominator)
        grad_point = torch.addcmul(grad_out * w, grad_log, d_log_dxi) / dy_dxi
        grad_y = -grad_point
    else:
        grad_log, grad_y = grad_log_det, grad_out
    grad_ratio = grad_y * h
    grad_h = grad_y * ratio
    grad_numerator = grad_ratio / denominator
    grad_denominator = torch.addcmul(2 * grad_log, grad_ratio, ratio).div_(denominator).neg_()
    grad_g = grad_log / g
    grad_c = grad_denominator * q
    grad_s = torch.add(grad_denominator, grad_c, alpha=-2).add_(grad_log / s, alpha=2)
    grad_s = torch.addcmul(torch.addcmul(grad_s, grad_numerator, xi2), grad_g, q, value=2)
    grad_d0 = torch.addcmul(torch.addcmul(grad_c, grad_numerator, q), grad_g, om2)
    grad_d1 = torch.addcmul(grad_c, grad_g, xi2)
    if inverse:
        grad_xk, grad_yk, grad_w = grad_out, grad_y, grad_out * xi
    else:
        grad_q = torch.addcmul(torch.addcmul(grad_denominator * c, grad_numerator, d0), grad_g, s, value=2)
        grad_xi2 = torch.addcmul(grad_numerator * s, grad_g, d1)
        grad_xi = torch.addcmul(2 * xi * grad_xi2, om - xi, grad_q).sub_(2 * om * grad_g * d0)
        grad_point = grad_xi / w
        grad_xk, grad_yk, grad_w = -grad_point, grad_out, -grad_point * xi
    grad_h = grad_h + grad_s / w  # s = h / w
    grad_w = grad_w - grad_s * s / w
    return grad_point, grad_xk, grad_yk, grad_w, grad_h, grad_d0, grad_d1


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
        out, log_det, saved = _rq_forward(point, *knot.unbind(-1), *size.unbind(-1), *derivative.unbind(-1), inverse)
        ctx.inverse = inverse
        ctx.save_for_backward(*saved)
        return out, log_det

    @staticmethod
    def backward(ctx, grad_out, grad_log_det):
        grad_point, grad_xk, grad_yk, grad_w, grad_h, grad_d0, grad_d1 = _rq_backward(
            ctx.saved_tensors, grad_out, grad_log_det, ctx.inverse
        )
        pairs = ((grad_xk, grad_yk), (grad_w, grad_h), (grad_d0, grad_d1))
        return grad_point, *(torch.stack(pair, dim=-1) for pair in pairs), None


@functools.lru_cache(maxsize=32)
def _bin_tables(bins: int, dtype: torch.dtype, device: torch.device, constants: SplineConstants):
    """Constants of :class:`_UnconstrainedSpline` (created once, not at every call).

    Minimum bin (width, height) (2,), their ``scale = 1 - K minimum`` (2,), the minimum parts
    ``k minimum`` of the inner bin edges k = 1..K-1 (2, K-1) and the flat offsets (0, K) of the two halves.
    """
    minimum = torch.tensor([constants.min_bin_width, constants.min_bin_height], dtype=dtype, device=device)
    inner_edges = torch.arange(1, bins, dtype=dtype, device=device) * minimum[:, None]
    return minimum, 1 - bins * minimum, inner_edges, torch.tensor([0, bins], device=device)


def _spline_forward(x: torch.Tensor, params: torch.Tensor, inverse: bool, constants: SplineConstants):
    """Forward of :class:`_UnconstrainedSpline`: (image, log|det|, what its backward needs)."""
    bins = (params.shape[-1] - 1) // 3
    params = params.contiguous()
    minimum, scale, inner_edges, halves = _bin_tables(bins, params.dtype, params.device, constants)
    exp = params[..., : 2 * bins].clamp(max=50.0).unflatten(-1, (2, bins)).exp_()
    cumulative = exp.cumsum(dim=-1)
    total = cumulative[..., -1]
    unit = scale / total  # (..., 2): the softmax normalisation times ``scale``
    searched = 1 if inverse else 0
    edges = torch.addcmul(inner_edges[searched], unit[..., searched, None], cumulative[..., searched, :-1])
    x = x.clamp(0.0, 1.0)
    index = torch.searchsorted(edges, x[..., None])[..., 0]
    rows = torch.arange(x.numel(), device=x.device).view(x.shape)
    flat = torch.add(index, rows, alpha=2 * bins)[..., None] + halves  # (..., 2) into exp.view(-1)
    exp_k = exp.take(flat)
    before = cumulative.take(flat) - exp_k  # unnormalised sum of the sizes before the bin
    w, h = torch.addcmul(minimum, unit, exp_k).unbind(-1)
    x_k, y_k = torch.addcmul(minimum * index[..., None], unit, before).unbind(-1)
    pair = torch.add(index + 2 * bins, rows, alpha=3 * bins + 1)[..., None] + halves.clamp(max=1)
    raw_derivative = params.take(pair)
    d0, d1 = constants.derivative(raw_derivative).unbind(-1)
    out, log_det, saved = _rq_forward(x, x_k, y_k, w, h, d0, d1, inverse)
    return out, log_det, (index, exp, total, unit, exp_k, before, raw_derivative, *saved)


class _UnconstrainedSpline(torch.autograd.Function):
    """The whole spline from network outputs (..., 3K+1) as one autograd node (see :func:`constrain`).

    Forward: exponentials of the width/height logits (clamped at 50, which only a diverged training
    reaches) and their running sums; the bin edges searched are ``k min + scale cumsum / total``, and only
    the located bin's sizes and left knots are normalised (one broadcast pass over the K bins instead of a
    full softmax); the located bin's entries are read by flat index (``take``, cheaper than ``gather``);
    the derivatives' exponential only for the two each point needs; then :func:`_rq_forward`.
    Backward: :func:`_rq_backward`, then through the bin lookup (a left knot is the sum of all sizes
    before it) and the softmax analytically. The softmax gradient ``scale softmax_j (G_j - sum_i softmax_i
    G_i)``, with G_j the gradient of the left knot for bins before the located one and of its size at it,
    is built as a running sum of three scattered entries per row, so no pass broadcasts over the bins
    (such passes cost several times a contiguous one at K ~ 10 on CPUs).
    """

    @staticmethod
    def forward(ctx, x, params, inverse: bool, constants: SplineConstants):
        out, log_det, saved = _spline_forward(x, params, inverse, constants)
        ctx.inverse, ctx.constants = inverse, constants
        ctx.save_for_backward(*saved)
        return out, log_det

    @staticmethod
    def backward(ctx, grad_out, grad_log_det):
        grad_x, grad_params = _spline_backward(ctx.saved_tensors, grad_out, grad_log_det, ctx.inverse, ctx.constants)
        return grad_x, grad_params, None, None


def _spline_backward(saved_tensors, grad_out, grad_log_det, inverse: bool, constants: SplineConstants):
    """Backward of :class:`_UnconstrainedSpline` from what :func:`_spline_forward` saved: (grad x, grad params)."""
    index, exp, total, unit, exp_k, before, raw_derivative, *saved = saved_tensors
    grad_x, grad_xk, grad_yk, grad_w, grad_h, grad_d0, grad_d1 = _rq_backward(saved, grad_out, grad_log_det, inverse)
    bins = exp.shape[-1]
    grad_knot = torch.stack((grad_xk, grad_yk), dim=-1).mul_(unit)[..., None]  # (..., 2, 1)
    grad_size = torch.stack((grad_w, grad_h), dim=-1).mul_(unit)[..., None]
    dot = torch.addcmul(grad_knot * before[..., None], grad_size, exp_k[..., None]) / total[..., None]
    # unit G_j - unit sum_i softmax_i G_i as the running sum of: grad_knot - dot at bin 0,
    # grad_size - grad_knot at the located bin k, -grad_size at k + 1 (a spare column K catches k = K-1)
    steps = exp.new_zeros(*exp.shape[:-1], bins + 1)
    index2 = index[..., None, None].expand(*exp.shape[:-1], 1)
    steps[..., :1] = grad_knot - dot
    steps.scatter_add_(-1, index2, grad_size - grad_knot)
    steps.scatter_add_(-1, index2 + 1, grad_size.neg_())
    grad_params = exp.new_empty(*exp.shape[:-2], 3 * bins + 1)
    torch.mul(exp, steps.cumsum_(dim=-1)[..., :bins], out=grad_params[..., : 2 * bins].unflatten(-1, (2, bins)))
    # d derivative / d raw, 0 where the exponent is capped
    slope = constants.derivative(raw_derivative) - constants.min_derivative
    slope.masked_fill_(raw_derivative >= MAX_LOG_DERIVATIVE, 0.0)
    grad_raw = torch.stack((grad_d0, grad_d1), dim=-1).mul_(slope)
    grad_params[..., 2 * bins :].zero_().scatter_(-1, _pair(index[..., None]), grad_raw)
    return grad_x, grad_params


@dataclass(frozen=True)
class SplineRecord:
    """A spline evaluated without gradient: its input, image, log|det| and what its backward needs.

    Why: training evaluates log q with gradient at the very points it just drew, so the inverse splines of that
    pass would recompute, bin by bin, what drawing computed (a third of a 10D training step's time).
    :func:`replay_inverse` gives that pass the recorded values with the analytic backward instead.
    """

    x: torch.Tensor
    out: torch.Tensor
    log_det: torch.Tensor
    saved: tuple[torch.Tensor, ...]
    inverse: bool
    constants: SplineConstants

    def take(self, rows: torch.Tensor) -> SplineRecord:
        """The record of the points ``rows`` (a mask or indices) selects: every recorded tensor is per point."""
        saved = tuple(t[rows] for t in self.saved)
        return SplineRecord(self.x[rows], self.out[rows], self.log_det[rows], saved, self.inverse, self.constants)

    def inverse_image(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse map's image of the recorded points and its log|det| (the forward pass read backwards)."""
        return (self.out, self.log_det) if self.inverse else (self.x, -self.log_det)


class _ReplayedInverse(torch.autograd.Function):
    """The inverse spline at recorded points (:class:`SplineRecord`): the recorded image, the analytic backward."""

    @staticmethod
    def forward(ctx, y, params, record: SplineRecord):
        ctx.record = record
        out, log_det = record.inverse_image()
        return out.clone(), log_det.clone()  # fresh outputs: the record's tensors stay as they are

    @staticmethod
    def backward(ctx, grad_out, grad_log_det):
        record = ctx.record
        grad_y, grad_params = _spline_backward(record.saved, grad_out, grad_log_det, True, record.constants)
        return grad_y, grad_params, None


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
    if torch.is_grad_enabled() and (x.requires_grad or params.requires_grad):
        return _UnconstrainedSpline.apply(x, params, inverse, constants)
    out, log_det, _ = _spline_forward(x, params, inverse, constants)  # no autograd node when sampling
    return out, log_det


def rq_spline_recorded(
    x: torch.Tensor, params: torch.Tensor, inverse: bool, constants: SplineConstants = SplineConstants()
) -> SplineRecord:
    """:func:`rq_spline_unconstrained` without gradient, kept for :func:`replay_inverse`."""
    with torch.no_grad():
        x = x.clamp(0.0, 1.0)
        out, log_det, saved = _spline_forward(x, params, inverse, constants)
    return SplineRecord(x, out, log_det, saved, inverse, constants)


def replay_inverse(y: torch.Tensor, params: torch.Tensor, record: SplineRecord) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse spline with gradient at the points of ``record``: ``y`` must be its image (its input, for an
    inverse record) and ``params`` the parameters it was evaluated with; equal to ``rq_spline_unconstrained(y,
    params, inverse=True)`` up to the rounding of the inverse map, which it does not recompute."""
    return _ReplayedInverse.apply(y, params, record)
