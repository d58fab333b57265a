"""Unweighting: efficiency, unbiased shapes and integral, robust w_max, overweight fraction."""

import torch

from madnis.unweighting import robust_max_weight, unweight, unweighting_efficiency


def test_uniform_weights_have_efficiency_one_and_are_all_kept():
    weights = torch.full((1000,), 2.5, dtype=torch.float64)
    assert robust_max_weight(weights) == 2.5
    assert unweighting_efficiency(weights, 2.5) == 1.0
    selection = unweight(weights, generator=torch.Generator().manual_seed(0))
    assert len(selection.indices) == 1000 and selection.efficiency == 1.0 and selection.n_overweight == 0
    assert torch.allclose(selection.weights.sum(), torch.tensor(2.5, dtype=torch.float64))


def test_unweighted_events_reproduce_the_target_histogram():
    # x ~ U[0,1] with weights w = 3 x^2 (target density 3x^2): the kept x follow 3x^2
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(400_000, generator=generator, dtype=torch.float64)
    weights = 3 * x**2
    selection = unweight(weights, w_max=3.0, generator=generator)
    kept = x[selection.indices]
    n_bins = 20
    counts = torch.histc(kept, bins=n_bins, min=0, max=1)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    expected = len(kept) * edges.diff() * (edges[1:] ** 3 - edges[:-1] ** 3) / edges.diff()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 2 * n_bins, chi2  # chi2/ndf ~ 1 for the right shape; a flat shape gives ~1e4
    assert abs(selection.efficiency - 1 / 3) < 0.01
    assert abs(float(selection.weights.sum()) - 1.0) < 0.01  # integral of 3x^2


def test_bootstrap_max_is_below_true_max_for_heavy_tails_and_keeps_integral():
    generator = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    weights = torch.distributions.Pareto(1.0, 1.5).sample((200_000,)).double()  # heavy tail
    w_max = robust_max_weight(weights, generator=generator)
    assert weights.median() < w_max < 0.2 * float(weights.max())
    selection = unweight(weights, w_max=w_max, generator=generator)
    assert selection.n_overweight > 0
    # ~efficiency * n = 2800 kept events: 3 sigma statistical tolerance on the integral
    assert abs(float(selection.weights.sum()) / float(weights.mean()) - 1) < 0.06
    assert selection.efficiency > unweighting_efficiency(weights, float(weights.max()))


def test_overweight_fraction_is_respected():
    torch.manual_seed(4)
    weights = torch.distributions.Exponential(1.0).sample((100_000,)).double()
    for fraction in (0.001, 0.01, 0.05):
        w_max = robust_max_weight(weights, overweight_fraction=fraction)
        above = float(weights[weights > w_max].sum() / weights.sum())
        assert fraction - 1e-3 < above <= fraction + 1e-4, (fraction, above)


def test_negative_weights_keep_their_sign_and_first_n_events():
    generator = torch.Generator().manual_seed(3)
    weights = torch.randn(10_000, generator=generator, dtype=torch.float64)
    selection = unweight(weights, n_events=500, w_max=3.0, generator=generator)
    assert len(selection.indices) == 500
    assert torch.equal(torch.sign(selection.weights), torch.sign(weights[selection.indices]))
    assert (selection.indices.diff() > 0).all()
