"""Losses: importance-weighted estimates agree with direct sampling, gradients are finite, optimum is zero."""

import pytest
import torch

from madnis.losses import LOSSES, LOSSES_BLIND_TO_ZEROS, channel_variances

N = 200_000


def q_model_density(r):  # linear density 0.5 + r on [0, 1]
    return 0.5 + r


def q_model_sample(u):  # inverse CDF of 0.5 + r
    return -0.5 + torch.sqrt(0.25 + 2 * u)


def batch(r_by_channel, q_sample_fn, theta):
    """Two channels; value and alpha depend on r; q_model carries the parameter theta (gradient)."""
    channel = torch.cat([torch.full((len(r),), c) for c, r in enumerate(r_by_channel)])
    r = torch.cat(r_by_channel)
    value = torch.exp(-((r - 0.3) ** 2) / 0.1) + 0.5 * (channel == 1) * r
    alpha = torch.where(channel == 0, torch.sigmoid(3 * r - 1), 1 - torch.sigmoid(3 * r - 1))
    q_model = q_model_density(r) * theta
    return channel, value, q_model, q_sample_fn(r), alpha


@pytest.mark.parametrize("name", list(LOSSES))
def test_importance_weighted_loss_matches_direct_sampling(name):
    gen = torch.Generator().manual_seed(0)
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    u = [torch.rand(N, generator=gen, dtype=torch.float64) for _ in range(2)]
    direct = LOSSES[name](*batch([q_model_sample(x) for x in u], q_model_density, theta), 2).detach()
    flat = [torch.rand(N, generator=gen, dtype=torch.float64) for _ in range(2)]
    weighted = LOSSES[name](*batch(flat, torch.ones_like, theta), 2)
    assert torch.isfinite(direct) and torch.isfinite(weighted)
    assert abs(weighted.item() - float(direct)) < 0.03 * abs(float(direct)) + 1e-3
    # a sample from a different density without reweighting would not agree
    naive = LOSSES[name](*batch(flat, q_model_density, theta), 2).detach()
    assert abs(float(naive) - float(direct)) > 0.03 * abs(float(direct)) + 1e-3
    weighted.backward()
    assert torch.isfinite(theta.grad)


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradients_finite_with_zero_values_and_weights(name):
    torch.manual_seed(0)
    params = torch.zeros(3, requires_grad=True)
    n = 64
    channel = torch.arange(n) % 3
    value = torch.rand(n, dtype=torch.float64)
    value[::4] = 0.0
    alpha = torch.softmax(params, 0)[channel].double()
    alpha = torch.where(torch.arange(n) % 5 == 0, torch.zeros_like(alpha), alpha)
    q_model = torch.exp(params.double()[channel])
    loss = LOSSES[name](channel, value, q_model, torch.ones(n, dtype=torch.float64), alpha, 3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(params.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES_BLIND_TO_ZEROS))
def test_points_of_value_zero_left_out_with_their_counts_give_the_same_loss_and_gradient(name):
    """A buffered batch may store only its non-zero points and their channels' zero counts (madnis.buffer): every loss
    blind to zeros gives the value and the gradient (flow density and channel weights) of the whole batch; channel 2
    has only zeros, channel 3 a single non-zero point among zeros."""
    gen = torch.Generator().manual_seed(3)
    n, n_channels = 400, 4
    channel = torch.randint(0, 3, (n,), generator=gen)
    channel[:9] = 3
    value = torch.rand(n, generator=gen, dtype=torch.float64) * (torch.rand(n, generator=gen) < 0.5)
    value[channel == 2] = 0.0
    value[channel == 3] = 0.0
    value[0] = 0.7
    r = torch.rand(n, generator=gen, dtype=torch.float64)
    q_sample = 0.5 + r

    def loss_and_gradient(keep: torch.Tensor, zero_counts: torch.Tensor | None):
        theta = torch.tensor([1.3, -0.4], dtype=torch.float64, requires_grad=True)
        q_model = (1 + theta[0] * (r - 0.5))[keep]
        alpha = torch.sigmoid(theta[1] + 2 * r)[keep]
        loss = LOSSES[name](channel[keep], value[keep], q_model, q_sample[keep], alpha, n_channels, zero_counts)
        loss.backward()
        return loss.detach(), theta.grad

    whole = loss_and_gradient(torch.ones(n, dtype=torch.bool), None)
    nonzero = value != 0
    left_out = loss_and_gradient(nonzero, torch.bincount(channel[~nonzero], minlength=n_channels))
    assert bool((whole[1].abs() > 1e-6).all())  # the batch trains both the density and the channel weight
    torch.testing.assert_close(left_out[0], whole[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(left_out[1], whole[1], rtol=1e-10, atol=1e-14)
    # without the counts the channel means are those of the non-zero points alone: another loss
    without = loss_and_gradient(nonzero, None)
    assert abs(float(without[0] - whole[0])) > 1e-3 * abs(float(whole[0]))


def test_rkl_refuses_a_batch_without_its_zero_valued_points():
    """rkl penalises the flow's density at points of value 0: it must see them."""
    assert "rkl" not in LOSSES_BLIND_TO_ZEROS
    ones = torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs the points with value 0"):
        LOSSES["rkl"](torch.zeros(4, dtype=torch.long), ones, ones, ones, ones, 1, torch.tensor([2]))


def test_zero_loss_when_flow_matches_integrand():
    r = torch.rand(10_000, dtype=torch.float64)
    channel = torch.zeros(10_000, dtype=torch.long)
    value = 3 * (0.5 + r)  # proportional to q_model
    q = q_model_density(r)
    for name in ("stratified_variance", "variance", "kl"):
        assert abs(float(LOSSES[name](channel, value, q, q, torch.ones_like(r), 1))) < 1e-9
    variance, usable = channel_variances(channel, value * (1 + r), q, q, torch.ones_like(r), 2)
    assert usable.tolist() == [True, False] and variance[0] > 0 and variance[1] == 0


def test_stratified_loss_is_square_of_summed_sigmas():
    channel = torch.tensor([0, 0, 0, 1, 1, 1])
    value = torch.tensor([1.0, 2.0, 3.0, 1.0, 1.0, 4.0], dtype=torch.float64)
    ones = torch.ones(6, dtype=torch.float64)
    sigma0, sigma1 = value[:3].std(), value[3:].std()
    torch.testing.assert_close(
        LOSSES["stratified_variance"](channel, value, ones, ones, ones, 2), (sigma0 + sigma1) ** 2
    )
    torch.testing.assert_close(LOSSES["variance"](channel, value, ones, ones, ones, 2), sigma0**2 + sigma1**2)


def test_moment3_loss_is_smallest_where_the_flow_matches_the_integrand():
    """(sum_i E_q[|w|^3]^(1/3))^2 equals (sum_i I_i)^2 at q_i ∝ |alpha_i value| and is larger for any other q."""
    r = torch.rand(2, 100_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    channel = torch.arange(2).repeat_interleave(r.shape[1])
    r = r.flatten()  # each channel's own flat sample (q_sample = 1)
    value = torch.full_like(r, 3.0)
    alpha = torch.where(channel == 0, r, 1 - r)  # I_0 = I_1 = 1.5
    ones = torch.ones_like(r)
    loss = LOSSES["stratified_moment3"]
    matched = 2 * alpha  # q_i = alpha_i value / I_i: every weight is I_i (estimated from the flat sample: 0.5 %)
    assert abs(float(loss(channel, value, matched, ones, alpha, 2)) - 9.0) < 0.05
    for other in (ones, 0.5 * (ones + matched)):  # flat (exactly 9 * 6.75^(2/3) / 2.25 = 14.3), half way
        assert float(loss(channel, value, other, ones, alpha, 2)) > 9.3


def test_config_lists_the_losses_training_knows():
    from madnis import config

    assert set(config.LOSSES) == set(LOSSES)
