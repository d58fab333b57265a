"""Stratified allocation: exact integer counts ∝ sigma_i with a uniform share; running statistics."""

import pytest
import torch

from madnis.stratification import ChannelStatistics, Stratifier, allocate_points, largest_remainder


def test_counts_sum_exactly_and_follow_sigma():
    sigma = torch.tensor([1.0, 3.0, 0.0, 6.0])
    active = torch.tensor([True, True, True, True])
    counts = allocate_points(1000, sigma, active, uniform_fraction=0.0)
    assert counts.sum() == 1000 and counts.tolist() == [100, 300, 0, 600]
    counts = allocate_points(1000, sigma, active, uniform_fraction=0.2)
    assert counts.sum() == 1000 and counts.tolist() == [130, 290, 50, 530]


def test_inactive_channels_get_nothing_and_minimum_points():
    sigma = torch.tensor([1.0, 1000.0, 5.0])
    active = torch.tensor([True, True, False])
    counts = allocate_points(101, sigma, active, uniform_fraction=0.0, min_points=2)
    assert counts.tolist()[2] == 0 and counts.sum() == 101 and counts[0] >= 2


def test_uniform_when_no_sigma_and_odd_sizes():
    counts = allocate_points(7, torch.zeros(3), torch.ones(3, dtype=torch.bool))
    assert counts.sum() == 7 and counts.max() - counts.min() <= 1
    assert largest_remainder(torch.tensor([1.0, 1.0, 1.0]), 10).sum() == 10
    with pytest.raises(ValueError):
        allocate_points(10, torch.ones(2), torch.zeros(2, dtype=torch.bool))


def test_running_statistics_and_warmup():
    stats = ChannelStatistics(2, decay=0.5)
    measured = torch.tensor([True, False])
    stats.update(torch.tensor([2.0, 9.0]), torch.tensor([4.0, 9.0]), measured)
    stats.update(torch.tensor([4.0, 9.0]), torch.tensor([8.0, 9.0]), torch.tensor([True, True]))
    assert stats.integral.tolist() == [3.0, 9.0] and stats.sigma.tolist() == [6.0, 9.0]
    stratifier = Stratifier(stats, uniform_fraction=0.0, warmup_steps=1)
    active = torch.ones(2, dtype=torch.bool)
    assert stratifier.counts(100, active, online_step=0).tolist() == [50, 50]
    assert stratifier.counts(150, active, online_step=1).tolist() == [60, 90]
