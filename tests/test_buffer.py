"""Sample buffer: ring capacity, top-m prior storage with the generating channel kept, dense rebuild, zero-valued
points left out with their counts."""

import torch

from madnis.buffer import BufferedBatch, SampleBuffer, top_m_prior


def store(buffer, tag, prior=None, n=8):
    buffer.store(
        BufferedBatch(
            torch.full((n, 2), float(tag)),
            torch.full((n,), float(tag)),
            torch.ones(n),
            torch.arange(n) % 4,
            prior,
            None,
        )
    )


def test_ring_buffer_keeps_the_last_capacity_batches():
    buffer = SampleBuffer(capacity=3, n_channels=4)
    for tag in range(5):
        store(buffer, tag)
    assert len(buffer) == 3
    gen = torch.Generator().manual_seed(0)
    seen = {int(buffer.sample(gen).value[0]) for _ in range(60)}
    assert seen == {2, 3, 4}


def test_top_m_keeps_largest_weights_and_generating_channel():
    prior = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]])
    channel = torch.tensor([3, 3])
    values, indices = top_m_prior(prior, channel, 2)
    assert sorted(indices[0].tolist()) == [0, 3]  # channel 3 forced in, then the largest (0)
    assert sorted(indices[1].tolist()) == [2, 3]
    torch.testing.assert_close(values, prior.gather(1, indices))


def test_dense_prior_rebuilt_from_top_m():
    torch.manual_seed(0)
    prior = torch.softmax(torch.randn(8, 4), dim=1)
    buffer = SampleBuffer(capacity=2, n_channels=4, top_m=2)
    store(buffer, 1, prior)
    dense = buffer.sample().alpha_prior
    assert dense.shape == (8, 4) and ((dense > 0).sum(1) == 2).all()
    kept = dense > 0
    torch.testing.assert_close(dense[kept], prior[kept])
    channel = torch.arange(8) % 4
    assert (dense[torch.arange(8), channel] > 0).all()
    full = SampleBuffer(capacity=2, n_channels=4, top_m=None)
    store(full, 1, prior)
    torch.testing.assert_close(full.sample().alpha_prior, prior)


def test_dropping_zeros_keeps_the_non_zero_points_and_counts_the_others_per_channel():
    buffer = SampleBuffer(capacity=2, n_channels=3, top_m=2)
    channel = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    value = torch.tensor([0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 5.0])
    prior = torch.softmax(torch.arange(24.0).reshape(8, 3), dim=1)
    features = torch.arange(16.0).reshape(8, 2)
    b, _ = BufferedBatch(torch.arange(8.0)[:, None], value, torch.ones(8), channel, prior, features).without_zeros(3)
    buffer.store(b)
    kept = buffer.sample()
    assert kept.value.tolist() == [2.0, 3.0, 5.0] and kept.r[:, 0].tolist() == [1.0, 4.0, 7.0]
    assert kept.channel.tolist() == [0, 1, 0] and kept.features[:, 0].tolist() == [2.0, 8.0, 14.0]
    assert kept.zero_counts.tolist() == [1, 2, 2]
    values, indices = top_m_prior(prior[[1, 4, 7]], channel[[1, 4, 7]], 2)  # the kept points' own rows
    torch.testing.assert_close(kept.alpha_prior.gather(1, indices), values)


def test_a_batch_of_zeros_keeps_its_first_point_and_a_kept_batch_has_no_counts():
    buffer = SampleBuffer(capacity=1, n_channels=2)
    b, _ = BufferedBatch(
        torch.zeros(4, 1), torch.zeros(4), torch.ones(4), torch.tensor([1, 0, 0, 1]), None, None
    ).without_zeros(2)
    buffer.store(b)
    kept = buffer.sample()
    assert kept.channel.tolist() == [1] and kept.zero_counts.tolist() == [2, 1]
    plain = SampleBuffer(capacity=1, n_channels=2)
    plain.store(BufferedBatch(torch.zeros(4, 1), torch.zeros(4), torch.ones(4), torch.tensor([1, 0, 0, 1]), None, None))
    assert len(plain.sample().value) == 4 and plain.sample().zero_counts is None
