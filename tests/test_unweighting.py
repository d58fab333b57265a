"""Unweighting: MadEvent's w_max rule on analytic weight distributions, unbiased events, efficiency."""

import math

import pytest
import torch

from madnis.unweighting import (
    channel_max_weights,
    max_weight,
    multichannel_efficiency,
    overweight_share,
    unweight,
    unweighting_efficiency,
)


def test_uniform_weights_have_efficiency_one_and_are_all_kept():
    weights = torch.full((1000,), 2.5, dtype=torch.float64)
    assert max_weight(weights) == 2.5
    assert unweighting_efficiency(weights, 2.5) == 1.0
    selection = unweight(weights, generator=torch.Generator().manual_seed(0))
    assert len(selection.indices) == 1000 and selection.efficiency == 1.0 and selection.n_overweight == 0
    assert torch.allclose(selection.weights.sum(), torch.tensor(2.5, dtype=torch.float64))


@pytest.mark.parametrize("share", [1e-2, 1e-3])
def test_share_above_w_max_is_the_asked_one_on_exponential_weights(share):
    # w ~ Exp(1): E[(w - t)+] / E[w] = exp(-t), so the rule's w_max is -ln(share)
    weights = -torch.log(torch.rand(1_000_000, generator=torch.Generator().manual_seed(5), dtype=torch.float64))
    w_max = max_weight(weights, share)
    assert overweight_share(weights, w_max) == pytest.approx(share, rel=1e-9)  # the sample's own share: exact
    assert w_max == pytest.approx(-math.log(share), rel=0.025)
    assert math.exp(-w_max) == pytest.approx(share, rel=0.2)  # the population share above w_max


def test_share_above_w_max_on_pareto_weights():
    # w ~ Pareto(1, a): share above t is t^(1 - a) / a, so the rule's w_max is (a * share)^(-1 / (a - 1))
    a, share = 4.0, 1e-3
    weights = torch.rand(1_000_000, generator=torch.Generator().manual_seed(6), dtype=torch.float64) ** (-1 / a)
    w_max = max_weight(weights, share)
    assert w_max == pytest.approx((a * share) ** (-1 / (a - 1)), rel=0.1)
    assert overweight_share(weights, w_max) == pytest.approx(share, rel=1e-9)
    assert unweighting_efficiency(weights, w_max) > unweighting_efficiency(weights, float(weights.max()))


def test_zero_share_gives_the_largest_weight_and_bad_input_fails():
    weights = torch.tensor([0.5, 3.0, 1.0, -2.0], dtype=torch.float64)
    assert max_weight(weights, 0.0) == 3.0
    assert max_weight(weights, 0.1) == pytest.approx(3.0 - 0.65)  # 3 - w_max = 0.1 * 6.5
    with pytest.raises(ValueError, match="max_overweight"):
        max_weight(weights, 1.0)
    with pytest.raises(ValueError, match="finite"):
        max_weight(torch.zeros(3))


def test_unweighted_events_with_overweights_are_unbiased_per_bin():
    # x ~ U[0,1], w = (2/3) x^(-1/3): target density (2/3) x^(-1/3), integral x^(2/3) per bin. With 1 % of
    # the weight above w_max the overweights sit at small x: keeping them with weight w / w_max keeps
    # every bin unbiased, truncating them to w_max would pull the first bins down by 7-20 sigma.
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(1_000_000, generator=generator, dtype=torch.float64)
    selection = unweight((2 / 3) * x ** (-1 / 3), max_overweight=1e-2, generator=generator)
    assert selection.n_overweight > 1000 and selection.overweight_share == pytest.approx(1e-2)
    edges = torch.tensor([0, 1e-3, 1e-2, 0.1, 1.0], dtype=torch.float64)
    bins = torch.bucketize(x[selection.indices], edges[1:-1])
    estimate = torch.zeros(4, dtype=torch.float64).index_add_(0, bins, selection.weights)
    error = torch.zeros(4, dtype=torch.float64).index_add_(0, bins, selection.weights**2).sqrt()
    exact = edges[1:] ** (2 / 3) - edges[:-1] ** (2 / 3)
    assert ((estimate - exact).abs() < 4 * error).all(), ((estimate - exact) / error).tolist()
    truncated = torch.zeros(4, dtype=torch.float64).index_add_(0, bins, torch.full_like(selection.weights, 1.0))
    truncated *= selection.w_max / len(x)
    assert ((truncated - exact) / error)[:2].max() < -4  # the check above can tell


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
    expected = len(kept) * (edges[1:] ** 3 - edges[:-1] ** 3)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 2 * n_bins, chi2  # chi2/ndf ~ 1 for the right shape; a flat shape gives ~1e4
    assert abs(selection.efficiency - 1 / 3) < 0.01
    assert abs(float(selection.weights.sum()) - 1.0) < 0.01  # integral of 3x^2


def test_negative_weights_keep_their_sign_and_first_n_events():
    generator = torch.Generator().manual_seed(3)
    weights = torch.randn(10_000, generator=generator, dtype=torch.float64)
    selection = unweight(weights, n_events=500, w_max=3.0, generator=generator)
    assert len(selection.indices) == 500
    assert torch.equal(torch.sign(selection.weights), torch.sign(weights[selection.indices]))
    assert (selection.indices.diff() > 0).all()


def pooled_efficiency(parts: list[torch.Tensor]) -> float:
    """Hit-or-miss efficiency against the largest W = w / P_i, P_i = n_i / n the channel's share of the pool."""
    n = sum(len(w) for w in parts)
    weights = torch.cat([w / (len(w) / n) for w in parts])
    return unweighting_efficiency(weights, max_weight(weights, 0.0))


def test_channels_in_proportion_to_their_max_weight_reach_the_multichannel_efficiency():
    """Channel 0 is flat, channel 1 has a long tail. With points ∝ I_i, channel 1's tail sets w_max for both (the
    efficiency is channel 1's own); with points ∝ w_max_i it is sum_i I_i / sum_i w_max_i, three times higher here."""
    torch.manual_seed(3)
    tail = torch.distributions.Pareto(1.0, 2.5).sample((20000,)).double()
    flat = lambda n: torch.full((n,), 5.0, dtype=torch.float64)  # noqa: E731
    within = torch.cat([flat(100), tail])
    channel = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(20000, dtype=torch.long)])
    max_weights = channel_max_weights(within, channel, 2, 0.0)
    assert max_weights.tolist() == [5.0, float(tail.max())]
    by_max = multichannel_efficiency(torch.tensor([5.0, float(tail.mean())]), max_weights)
    assert by_max == pytest.approx((5 + float(tail.mean())) / (5 + float(tail.max())))

    n_flat = lambda share: round(20000 * share[0] / share[1])  # noqa: E731
    by_integral = pooled_efficiency([flat(n_flat([5.0, float(tail.mean())])), tail])
    assert by_integral == pytest.approx(float(tail.mean() / tail.max()), rel=1e-3)
    assert pooled_efficiency([flat(n_flat(max_weights.tolist())), tail]) == pytest.approx(by_max, rel=1e-2)
    assert by_max > 3 * by_integral


def excess(weights: torch.Tensor, threshold: float) -> float:
    """e(t): the mean of (|w| - t)+, the overweight per point above ``threshold``."""
    return float((weights.abs() - threshold).clamp(min=0).mean())


def test_channel_max_weights_are_chosen_together_for_the_smallest_sum_within_the_bound():
    """A flat-ish channel and a Pareto tail: the w_max_i spend exactly the allowed overweight (1e-3 of sum_i I_i) in
    all, the tail taking more than its own share, and no pair of thresholds within the bound has a smaller sum (a
    scan over the flat channel's); one channel alone gets MadEvent's max_weight, and a bound of 0 every maximum."""
    generator = torch.Generator().manual_seed(5)
    flat = 1 + torch.rand(20_000, generator=generator, dtype=torch.float64)
    tail = torch.rand(20_000, generator=generator, dtype=torch.float64) ** (-1 / 1.5)  # Pareto, shape 1.5
    parts = [flat, tail]
    within, channel = torch.cat(parts), torch.cat([torch.full((20_000,), i) for i in (0, 1)])
    allowed = 1e-3 * float(flat.mean() + tail.mean())
    joint = channel_max_weights(within, channel, 3, 1e-3)
    assert joint[2] == 0 and sum(excess(w, float(t)) for w, t in zip(parts, joint)) == pytest.approx(allowed)
    separate = [max_weight(w, 1e-3) for w in parts]
    assert excess(tail, float(joint[1])) > 1e-3 * float(tail.mean()) and float(joint.sum()) < sum(separate)

    def tail_threshold(spent: float) -> float:  # the smallest t with excess(tail, t) <= allowed - spent
        low, high = 0.0, float(tail.max())
        for _ in range(100):
            low, high = (
                (low, 0.5 * (low + high))
                if excess(tail, 0.5 * (low + high)) <= allowed - spent
                else (0.5 * (low + high), high)
            )
        return high

    scan = [t0 + tail_threshold(excess(flat, t0)) for t0 in torch.linspace(1.95, 2.0, 51).tolist()]
    assert min(scan) >= float(joint.sum()) - 1e-6 * float(joint.sum())
    assert channel_max_weights(tail, torch.zeros(20_000, dtype=torch.long), 1, 1e-3).item() == max_weight(tail, 1e-3)
    assert channel_max_weights(within, channel, 2, 0.0).tolist() == [float(flat.max()), float(tail.max())]
    assert channel_max_weights(torch.zeros(4), torch.tensor([0, 0, 1, 1]), 2).tolist() == [0.0, 0.0]  # no weight
