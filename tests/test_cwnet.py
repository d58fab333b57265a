"""Channel-weight net: starts at the prior exactly, never NaN with zero priors, trainable."""

import torch

from madnis.cwnet import ChannelWeightNet


def test_output_equals_prior_at_initialisation():
    torch.manual_seed(0)
    prior = torch.softmax(torch.randn(100, 5), dim=1)
    features = torch.randn(100, 3)
    alpha = ChannelWeightNet(5, 3)(prior, features)
    torch.testing.assert_close(alpha, prior, rtol=0, atol=1e-7)
    alpha_no_features = ChannelWeightNet(5, 0)(prior, None)
    torch.testing.assert_close(alpha_no_features, prior, rtol=0, atol=1e-7)


def test_zero_priors_give_no_nan_and_zero_weight():
    prior = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    net = ChannelWeightNet(3, 2)
    alpha = net(prior, torch.randn(3, 2))
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))
    assert alpha[0, 1] < 1e-30 and alpha[2, 2] < 1e-30
    torch.testing.assert_close(alpha[1], torch.full((3,), 1 / 3))  # all-zero row: flat, not 0/0
    alpha.log().clamp_min(-50).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_flat_without_prior_and_trainable_bias():
    net = ChannelWeightNet(4, 0)
    alpha = net(None, None, n=7)
    torch.testing.assert_close(alpha, torch.full((7, 4), 0.25))
    alpha[:, 0].sum().backward()
    assert net.bias.grad.abs().sum() > 0


def test_features_change_weights_after_a_step():
    torch.manual_seed(1)
    net = ChannelWeightNet(2, 1)
    x = torch.rand(256, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(100):  # learn alpha_0 = 1 for x < 0.5
        alpha = net(None, x)
        loss = ((alpha[:, 0] - (x[:, 0] < 0.5).float()) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    alpha = net(None, torch.tensor([[0.1], [0.9]]))
    assert alpha[0, 0] > 0.8 and alpha[1, 0] < 0.2
