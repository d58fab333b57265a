"""Toy integrands: exact integrals, channel maps and Jacobians, priors."""

import pytest
import torch

from madnis.toys import (
    CamelBack1D,
    ManyChannels10D,
    ParetoChannels,
    TwoResonances4D,
    ZeroChannelToy,
    cauchy_inverse,
    cauchy_map,
)

TOYS = [
    CamelBack1D("flat"),
    CamelBack1D("bw"),
    TwoResonances4D(),
    TwoResonances4D(mapped=False),
    ManyChannels10D(),
    ZeroChannelToy(0.3),
    ParetoChannels(4, 3.0),
]


@pytest.mark.parametrize("toy", TOYS, ids=lambda t: type(t).__name__)
def test_exact_integral_matches_multichannel_monte_carlo(toy):
    gen = torch.Generator().manual_seed(1)
    n, total, variance = (40_000 if toy.n_channels < 10 else 2_000), 0.0, 0.0
    for c in range(toy.n_channels):
        r = torch.rand(n, toy.ndim, generator=gen, dtype=torch.float64)
        res = toy(r, torch.full((n,), c))
        alpha = res.alpha_prior[:, c] if res.alpha_prior is not None else 1.0 / toy.n_channels
        w = alpha * res.value
        total += float(w.mean())
        variance += float(w.var()) / n
    assert abs(total - toy.exact) < 4 * variance**0.5


def test_cauchy_map_inverse_and_jacobian():
    r = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    x, jac = cauchy_map(r, 0.3, 0.01)
    r_back, jac_back = cauchy_inverse(x, 0.3, 0.01)
    torch.testing.assert_close(r_back, r)
    torch.testing.assert_close(jac_back, jac)
    h = 1e-6
    numeric = (cauchy_map(r + h, 0.3, 0.01)[0] - cauchy_map(r - h, 0.3, 0.01)[0]) / (2 * h)
    torch.testing.assert_close(jac, numeric, rtol=1e-5, atol=0)
    assert x.min() >= 0 and x.max() <= 1


def test_priors_sum_to_one_and_zero_channel_has_zero_prior():
    r = torch.rand(100, 2, dtype=torch.float64)
    res = ZeroChannelToy(0.0)(r, torch.zeros(100, dtype=torch.long))
    torch.testing.assert_close(res.alpha_prior.sum(1), torch.ones(100, dtype=torch.float64))
    assert (res.alpha_prior[:, 2] == 0).all()
    many = ManyChannels10D()
    assert many.groups() == [[2 * g, 2 * g + 1] for g in range(24)]
    res = many(torch.rand(64, 10, dtype=torch.float64), torch.arange(64) % 48)
    torch.testing.assert_close(res.alpha_prior.sum(1), torch.ones(64, dtype=torch.float64))
