"""Flow: invertibility, exact log-Jacobians, points inside the cube, sample/log_prob consistency."""

import itertools

import pytest
import torch

from madnis.flow import Flow

KINDS = ("exchange", "log", "soft")
N_CONDITIONS = 3


def perturbed_flow(dims: int, kind: str, per_condition: bool, dtype: torch.dtype, seed: int = 0) -> Flow:
    """A flow away from the identity (the last layers start at zero), like one after training."""
    torch.manual_seed(seed)
    flow = Flow(dims, N_CONDITIONS, permutations=kind, per_condition=per_condition, hidden_units=16)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return flow.to(dtype)


def inputs(n: int, dims: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(1)
    z = torch.rand(n, dims, generator=generator, dtype=dtype)
    return z, torch.randint(0, N_CONDITIONS, (n,), generator=generator)


@pytest.mark.parametrize("kind,per_condition,dims", itertools.product(KINDS, (False, True), (1, 3, 7)))
def test_inverse_undoes_forward_float64(kind, per_condition, dims):
    flow = perturbed_flow(dims, kind, per_condition, torch.float64)
    z, condition = inputs(1000, dims, torch.float64)
    r, log_det = flow(z, condition)
    z_back, log_det_inverse = flow.inverse(r, condition)
    assert (z_back - z).abs().max() < 1e-12
    assert (log_det + log_det_inverse).abs().max() < 1e-10
    assert log_det.abs().max() > 0.1  # the flow is not the identity


@pytest.mark.parametrize("kind,per_condition", itertools.product(KINDS, (False, True)))
def test_inverse_undoes_forward_float32(kind, per_condition):
    flow = perturbed_flow(4, kind, per_condition, torch.float32)
    z, condition = inputs(1000, 4, torch.float32)
    z = z.clamp(0.01, 0.99)
    r, _ = flow(z, condition)
    z_back, _ = flow.inverse(r, condition)
    error = (z_back - z).abs().max(dim=1).values
    if kind == "soft":
        # logit/sigmoid near a face of the cube amplify float32 rounding by 1/(x(1-x)):
        # all but the points that pass within ~1e-3 of a face are exact to 1e-6
        assert (error < 1e-6).float().mean() > 0.97 and error.max() < 1e-4
    else:
        assert error.max() < 1e-6


@pytest.mark.parametrize("kind,dims", itertools.product(KINDS, (1, 3, 7)))
def test_log_det_matches_autograd_jacobian(kind, dims):
    flow = perturbed_flow(dims, kind, per_condition=dims == 3, dtype=torch.float64)
    z, condition = inputs(3, dims, torch.float64)
    r, log_det = flow(z, condition)
    _, log_det_inverse = flow.inverse(r, condition)
    for k in range(3):
        c = condition[k : k + 1]
        forward = torch.autograd.functional.jacobian(lambda t: flow(t[None], c)[0][0], z[k])
        inverse = torch.autograd.functional.jacobian(lambda t: flow.inverse(t[None], c)[0][0], r[k])
        assert torch.allclose(torch.linalg.slogdet(forward)[1], log_det[k], atol=1e-10)
        assert torch.allclose(torch.linalg.slogdet(inverse)[1], log_det_inverse[k], atol=1e-10)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
def test_points_strictly_inside_cube_even_from_the_faces(dtype):
    flow = perturbed_flow(3, "log", False, dtype)
    z = torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    condition = torch.tensor([0, 1, 2])
    for points, log_det in (flow(z, condition), flow.inverse(z, condition)):
        assert ((points > 0) & (points < 1)).all()
        assert torch.isfinite(log_det).all()


def test_sample_log_prob_matches_log_prob():
    flow = perturbed_flow(4, "log", False, torch.float64)
    condition = torch.tensor([0, 1, 2, 2, 1, 0])
    r, log_q = flow.sample(condition, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(log_q, flow.log_prob(r, condition), atol=1e-10)
    assert not torch.allclose(log_q, torch.zeros_like(log_q))


def _log_prob_and_gradient(flow: Flow, r: torch.Tensor, condition: torch.Tensor, replay=None):
    flow.zero_grad()
    log_q = flow.log_prob(r, condition, replay=replay)
    (log_q * torch.linspace(-1.0, 2.0, len(r), dtype=r.dtype)).sum().backward()
    return log_q.detach(), torch.cat([p.grad.flatten() for p in flow.parameters()])


@pytest.mark.parametrize("kind,per_condition,drawn", itertools.product(KINDS, (False, True), (True, False)))
def test_log_prob_replaying_a_recorded_pass_has_the_value_and_gradient_of_recomputing_it(kind, per_condition, drawn):
    """Training's log q at the points it just drew reuses the draw's splines (forward pass) or a flat point's density
    evaluation (inverse pass): the same log q and the same gradient for every parameter as the full inverse pass."""
    flow = perturbed_flow(5, kind, per_condition, torch.float64)
    z, condition = inputs(300, 5, torch.float64)
    record = []
    with torch.no_grad():
        if drawn:
            r, log_q_drawn = flow.sample(condition, torch.Generator().manual_seed(3), record=record)
        else:
            r, log_q_drawn = z, flow.log_prob(z, condition, record=record)
    assert len(record) == len(flow.blocks)
    replayed, gradient_replayed = _log_prob_and_gradient(flow, r, condition, replay=record)
    recomputed, gradient_recomputed = _log_prob_and_gradient(flow, r, condition)
    torch.testing.assert_close(replayed, log_q_drawn, rtol=0, atol=1e-12)
    torch.testing.assert_close(replayed, recomputed, rtol=0, atol=1e-9)
    assert gradient_recomputed.abs().max() > 1.0
    torch.testing.assert_close(gradient_replayed, gradient_recomputed, rtol=1e-7, atol=1e-9)


def test_conditions_give_different_densities_and_per_condition_nets_are_independent():
    flow = perturbed_flow(3, "log", True, torch.float64)
    r = torch.full((N_CONDITIONS, 3), 0.3, dtype=torch.float64)
    condition = torch.arange(N_CONDITIONS)
    before = flow.log_prob(r, condition)
    assert (before[1:] - before[0]).abs().min() > 1e-4
    with torch.no_grad():
        for parameter in flow.parameters():
            if parameter.shape[0] == N_CONDITIONS:
                parameter[1].add_(0.5)  # change only condition 1's networks
    after = flow.log_prob(r, condition)
    assert torch.allclose(after[[0, 2]], before[[0, 2]], atol=1e-14) and (after[1] - before[1]).abs() > 1e-3


def test_new_flow_is_identity_and_density_integrates_to_one():
    flow = Flow(2, 2)
    z = torch.rand(100, 2)
    r, log_det = flow(z, torch.zeros(100, dtype=torch.long))
    assert torch.allclose(r, z, atol=1e-6) and log_det.abs().max() < 1e-5
    trained = perturbed_flow(2, "exchange", False, torch.float64)
    grid = (torch.arange(200, dtype=torch.float64) + 0.5) / 200
    points = torch.cartesian_prod(grid, grid)
    density = trained.log_prob(points, torch.ones(len(points), dtype=torch.long)).exp()
    assert abs(density.mean() - 1) < 1e-3
