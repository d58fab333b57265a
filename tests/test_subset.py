"""Channel subsets: parts of a partition carry exactly their channels' contributions and add up to the integral."""

import math

import pytest
import torch

from madnis import MadNIS, TrainingConfig
from madnis.subset import ChannelSubset, partition_groups
from madnis.toys import CamelBack1D, ManyChannels10D


def test_partition_deals_whole_groups_in_turn():
    groups = ManyChannels10D().groups()
    parts = partition_groups(groups, 2)
    assert parts[0][:4] == [0, 1, 4, 5] and parts[1][:4] == [2, 3, 6, 7]
    assert sorted(parts[0] + parts[1]) == list(range(48))
    assert partition_groups([[0], [1, 2]], 5) == [[0], [1, 2]]  # never an empty part


def test_partition_by_weight_balances_the_parts():
    """g g > t t~ g's groups (cross sections in pb): dealt in turn 56 % / 44 %, by weight 50 % / 50 %."""
    sigma = [2.1, 2.9, 134.4, 13.3, 134.6, 56.3, 12.9, 56.4, 0.0]
    groups = [[2 * g, 2 * g + 1] for g in range(len(sigma))]
    parts = partition_groups(groups, 2, sigma)
    assert sorted(parts[0] + parts[1]) == list(range(18))
    load = [sum(sigma[c // 2] for c in part[::2]) for part in parts]
    assert abs(load[0] - load[1]) < 0.02 * sum(sigma)
    turn = [sum(sigma[c // 2] for c in part[::2]) for part in partition_groups(groups, 2)]
    assert abs(turn[0] - turn[1]) > 0.1 * sum(sigma)
    assert partition_groups(groups, 3, [1.0] * 9) == partition_groups(groups, 3)  # equal weights: dealt in turn


def test_a_channel_contributes_in_its_part_exactly_what_it_does_in_the_whole():
    toy = ManyChannels10D()
    part = ChannelSubset(toy, partition_groups(toy.groups(), 3)[1])
    assert part.n_channels == 16 and part.groups() == [[2 * g, 2 * g + 1] for g in range(8)]
    gen = torch.Generator().manual_seed(1)
    r = torch.rand(500, 10, generator=gen, dtype=torch.float64)
    local = torch.randint(0, part.n_channels, (500,), generator=gen)
    whole_channel = part.global_channel[local]
    here, whole = part(r, local), toy(r, whole_channel)
    rows = torch.arange(500)
    contribution = here.alpha_prior[rows, local] * here.value
    torch.testing.assert_close(contribution, whole.alpha_prior[rows, whole_channel] * whole.value)
    torch.testing.assert_close(here.alpha_prior.sum(dim=1), torch.ones(500, dtype=torch.float64))


def test_subset_needs_prior_and_whole_groups():
    with pytest.raises(ValueError, match="prior"):
        ChannelSubset(CamelBack1D("flat"), [0])
    with pytest.raises(ValueError, match="whole channel groups"):
        ChannelSubset(ManyChannels10D(), [0, 2, 3])


def test_the_parts_integrals_add_up_to_the_integral():
    toy = ManyChannels10D()
    results = []
    for s, channels in enumerate(partition_groups(toy.groups(), 2)):
        m = MadNIS(ChannelSubset(toy, channels), TrainingConfig(steps=30, batch_size=512, seed=s))
        m.train()
        results.append(m.integrate(60_000))
    total = sum(r.integral for r in results)
    error = math.sqrt(sum(r.error**2 for r in results))
    assert all(r.integral > 0.2 * toy.exact for r in results)  # both parts carry a real share
    assert abs(total - toy.exact) < 4 * error, (total, error, toy.exact)
