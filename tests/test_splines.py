"""RQ spline: inverse, log-Jacobian, learnable boundary derivatives, identity at zero parameters."""

import math

import pytest
import torch

from madnis.splines import (
    MAX_LOG_DERIVATIVE,
    MIN_DERIVATIVE,
    SplineConstants,
    constrain,
    rq_spline,
    rq_spline_unconstrained,
    unconstrain,
)

BINS = 8


def random_params(*shape: int, scale: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return scale * torch.randn(*shape, 3 * BINS + 1, generator=generator, dtype=torch.float64)


def test_inverse_undoes_forward_and_log_dets_cancel():
    params = random_params(500, scale=1.0)
    x = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y, log_det = rq_spline_unconstrained(x, params)
    x_back, log_det_inverse = rq_spline_unconstrained(y, params, inverse=True)
    assert torch.allclose(x_back, x, atol=1e-12, rtol=0)
    assert torch.allclose(log_det + log_det_inverse, torch.zeros_like(x), atol=1e-10)
    assert ((y >= 0) & (y <= 1)).all()


def test_log_det_matches_autograd():
    params = random_params(20)
    x = torch.linspace(0.001, 0.999, 20, dtype=torch.float64)
    for inverse in (False, True):
        jacobian = torch.autograd.functional.jacobian(lambda t: rq_spline_unconstrained(t, params, inverse)[0], x)
        _, log_det = rq_spline_unconstrained(x, params, inverse)
        assert torch.allclose(torch.diagonal(jacobian).log(), log_det, atol=1e-10)


def test_zero_parameters_give_identity():
    x = torch.rand(100, dtype=torch.float64)
    y, log_det = rq_spline_unconstrained(x, torch.zeros(100, 3 * BINS + 1, dtype=torch.float64))
    assert torch.allclose(y, x, atol=1e-12) and torch.allclose(log_det, torch.zeros_like(x), atol=1e-12)


def test_boundary_derivatives_are_learnable_and_used():
    params = torch.zeros(2, 3 * BINS + 1, dtype=torch.float64)
    params[1, 2 * BINS] = 1.5  # left boundary derivative of the second spline only
    params[1, -1] = -1.5  # right boundary derivative
    x = torch.tensor([0.0, 0.0], dtype=torch.float64)
    _, log_det_left = rq_spline_unconstrained(x, params)
    _, log_det_right = rq_spline_unconstrained(x + 1, params)
    _, _, derivatives = constrain(params, BINS)
    assert abs(log_det_left[0]) < 1e-12 and abs(log_det_right[0]) < 1e-12
    assert torch.allclose(log_det_left[1], derivatives[1, 0].log()) and derivatives[1, 0] > 2
    assert torch.allclose(log_det_right[1], derivatives[1, -1].log()) and derivatives[1, -1] < 0.5
    grad_params = params.clone().requires_grad_(True)
    rq_spline_unconstrained(torch.tensor([0.0, 0.0], dtype=torch.float64), grad_params)[1].sum().backward()
    assert grad_params.grad[:, 2 * BINS].abs().min() > 0  # gradient reaches the boundary derivative


def test_a_face_slope_of_a_thousand_is_a_few_units_away_and_the_cap_holds():
    """The density at a cube face reaches 1000 at a network output of ~7 (exponential derivatives: W+2j's weight
    tail sits at the faces), its log-Jacobian is exactly log 1000 and the gradient of log q is 1 per unit there;
    beyond MAX_LOG_DERIVATIVE the slope stays finite and no gradient flows (only a diverged training gets there)."""
    params = torch.zeros(3, 3 * BINS + 1, dtype=torch.float64)
    params[0, 2 * BINS] = math.log((1000 - MIN_DERIVATIVE) / (1 - MIN_DERIVATIVE))
    params[1, 2 * BINS] = MAX_LOG_DERIVATIVE + 50
    params = params.requires_grad_(True)
    _, log_det = rq_spline_unconstrained(torch.zeros(3, dtype=torch.float64), params)
    assert params[0, 2 * BINS] < 7 and log_det[0].item() == pytest.approx(math.log(1000), rel=1e-12)
    assert torch.isfinite(log_det).all() and log_det[1].item() == pytest.approx(
        MAX_LOG_DERIVATIVE + math.log(1 - MIN_DERIVATIVE), abs=1e-9
    )
    log_det.sum().backward()
    assert params.grad[0, 2 * BINS].item() == pytest.approx(1 - MIN_DERIVATIVE / 1000, rel=1e-9)
    assert params.grad[1, 2 * BINS] == 0


def test_unconstrain_inverts_constrain():
    constants = SplineConstants()
    widths, heights, derivatives = constrain(random_params(5), BINS, constants)
    again = constrain(unconstrain(widths, heights, derivatives, constants), BINS, constants)
    for a, b in zip(again, (widths, heights, derivatives)):
        assert torch.allclose(a, b, atol=1e-12)


def test_constrained_and_unconstrained_paths_agree():
    params = random_params(50)
    x = torch.rand(50, dtype=torch.float64)
    for inverse in (False, True):
        y1, l1 = rq_spline(x, *constrain(params, BINS), inverse=inverse)
        y2, l2 = rq_spline_unconstrained(x, params, inverse=inverse)
        assert torch.allclose(y1, y2, atol=1e-14) and torch.allclose(l1, l2, atol=1e-12)


def test_analytic_backward_matches_numerical_gradients():
    generator = torch.Generator().manual_seed(6)
    for inverse in (False, True):
        x = torch.rand(6, dtype=torch.float64, generator=generator).requires_grad_(True)
        params = random_params(6, scale=0.7).requires_grad_(True)
        assert torch.autograd.gradcheck(lambda a, p: rq_spline_unconstrained(a, p, inverse), (x, params))
