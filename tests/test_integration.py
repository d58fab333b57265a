"""Integration: float64 accumulation, per-channel/group tables, honest errors, NaN-safe."""

import math

import numpy as np
import pytest
import torch

from madnis import MadNIS, TrainingConfig
from madnis.integrand import IntegrandResult
from madnis.integration import ChannelAccumulator, SamplerPools, StagePool, integrate
from madnis.toys import TwoResonances4D


def test_accumulation_is_float64_whatever_the_weight_dtype():
    gen = torch.Generator().manual_seed(0)
    weights = (1e4 + torch.randn(1_000_000, generator=gen, dtype=torch.float64)).float()
    acc = ChannelAccumulator(1)
    for chunk in weights.split(99_999):  # batches merged one by one
        acc.add(torch.zeros(len(chunk), dtype=torch.long), chunk, torch.ones(len(chunk), dtype=torch.bool))
    assert acc.mean.dtype == torch.float64 and acc.m2.dtype == torch.float64
    exact = weights.double().numpy()
    result = acc.result(torch.zeros(1, dtype=torch.long))
    assert math.isclose(result.integral, exact.mean(), rel_tol=1e-12)
    statistical = math.sqrt(float(acc.channel_estimates()[1][0]))
    assert math.isclose(statistical, exact.std(ddof=1) / math.sqrt(len(exact)), rel_tol=1e-6)
    assert result.tail_error < 1e-2 * statistical  # a Gaussian tail adds nothing noticeable (madnis.tails)
    assert math.isclose(result.error, math.hypot(statistical, result.tail_error), rel_tol=1e-12)
    float32_sum = torch.zeros(1).index_add(0, torch.zeros(len(weights), dtype=torch.long), weights)
    assert abs(float(float32_sum) / len(exact) - exact.mean()) > 1e-3  # what float32 sums would have given


def test_integrate_channels_groups_and_table():
    counts = torch.tensor([300, 100, 600])
    groups = torch.tensor([0, 0, 1])

    def weight_fn(channel):
        return (channel + 1).double() * torch.ones(len(channel), dtype=torch.float64), channel != 1

    seen = []
    result = integrate(weight_fn, counts, groups, batch_size=128, callback=seen.append)
    assert result.n_points == 1000 and result.n_failed == 100 and len(seen) == 8
    assert [c.integral for c in result.channels] == [1.0, 0.0, 3.0]
    assert result.integral == 4.0 and result.error == 0.0
    assert [g.integral for g in result.groups()] == [1.0, 3.0] and result.groups()[0].n_points == 400
    table = result.format_table()
    assert "75.00%" in table and "100 failed" in table and len(table.splitlines()) == 2 + 3 + 1 + 2


class NaNInjected(TwoResonances4D):
    """The 4D toy with NaN values for about 0.2% of the points and inf priors for some more."""

    def evaluate(self, r, channel):
        result = super().evaluate(r, channel)
        bad = (r[:, 2] * 1000).long() % 500 == 7
        value = torch.where(bad, torch.full_like(result.value, float("nan")), result.value)
        alpha = result.alpha_prior.clone()
        alpha[(r[:, 3] * 1000).long() % 500 == 3] = float("inf")
        return IntegrandResult(value, alpha, None, result.features)


def test_nan_points_are_counted_and_never_poison_results():
    m = MadNIS(NaNInjected(), TrainingConfig(steps=20, batch_size=256, max_failed_fraction=0.05))
    history = m.train()
    assert history[-1].n_failed > 0 and history.n_skipped == 0
    assert all(torch.isfinite(p).all() for p in m.sampler.parameters())
    result = m.integrate(5000)
    assert math.isfinite(result.integral) and math.isfinite(result.error) and result.n_failed > 0
    sample = m.sample_weighted(2000)
    assert torch.isfinite(sample.weight).all() and (~sample.ok).sum() > 0
    assert (sample.weight[~sample.ok] == 0).all()


def test_too_many_failures_fail_clearly():
    class Broken(TwoResonances4D):
        def evaluate(self, r, channel):
            result = super().evaluate(r, channel)
            return IntegrandResult(torch.full_like(result.value, float("nan")), result.alpha_prior)

    m = MadNIS(Broken(), TrainingConfig(steps=1, batch_size=64))
    try:
        m.train()
    except RuntimeError as error:
        assert "max_failed_fraction" in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("no error for an integrand failing everywhere")


def test_honest_errors_pull_distribution():
    """Many tiny independent runs on the 4D toy: pulls (I - exact) / dI are standard normal."""
    toy = TwoResonances4D()
    pulls = []
    for seed in range(40):
        m = MadNIS(
            toy, TrainingConfig(steps=4, batch_size=128, seed=seed, flow_hidden_layers=1, stratified_warmup_steps=2)
        )
        m.train()
        result = m.integrate(1000)
        pulls.append((result.integral - toy.exact) / result.error)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.5 and 0.7 < pulls.std(ddof=1) < 1.3, pulls


def test_mostly_cut_channel_terminates_and_stays_unbiased():
    """99% of channel 1's points fail cuts (value 0): they are valid samples, nothing is redrawn."""

    class MostlyCut(TwoResonances4D):
        def evaluate(self, r, channel):
            result = super().evaluate(r, channel)
            cut = (channel == 1) & (r[:, 2] > 0.01)
            return IntegrandResult(torch.where(cut, torch.zeros_like(result.value), result.value), result.alpha_prior)

    toy = MostlyCut()
    m = MadNIS(toy, TrainingConfig(steps=3, batch_size=256))
    m.train()
    result = m.integrate(4000)
    vegas_calls = m.config.vegas_iterations * 256 * 2  # VEGAS pre-training: iterations x batch x 2 channel groups
    assert m.n_calls == vegas_calls + 3 * 256 + 4000 and result.n_failed == 0
    assert result.channels[1].integral < 0.1 * result.channels[0].integral


def test_many_channel_groups_share_flows():
    from madnis.toys import ManyChannels10D

    toy = ManyChannels10D()
    m = MadNIS(toy, TrainingConfig(steps=3, batch_size=480, per_group_flows=True, stratified_warmup_steps=1))
    m.train()
    assert m.sampler.n_groups == 24
    result = m.integrate(4800)
    assert len(result.groups()) == 24 and all(c.n_points >= 2 for c in result.channels)
    assert abs(result.integral - toy.exact) < 4 * result.error


def test_samplers_with_different_channel_weights_pool_as_wholes():
    """f = 1 on two channels with flat densities, so a point's weight in channel i is its sampler's alpha_i. An
    earlier sampler (alpha 0.9, 0.1; 100 points over both channels) and the final one (alpha 0.1, 0.9): its
    integration (100 points, both channels) and its generation's points (50, all in channel 0 by chance). Each sampler
    estimates 1; pooled per channel over every stage, channel 1 would miss the generation's stage:
    (100 x 0.9 + 100 x 0.1 + 50 x 0.1) / 250 + (100 x 0.1 + 100 x 0.9) / 200 = 0.92."""

    def stage(counts: tuple[int, int], alpha: tuple[float, float]) -> ChannelAccumulator:
        channel = torch.repeat_interleave(torch.arange(2), torch.tensor(counts))
        weight = torch.tensor(alpha, dtype=torch.float64)[channel]
        return ChannelAccumulator.of(2, channel, weight, torch.ones(len(channel), dtype=torch.bool))

    earlier, integration, generation = (
        stage((50, 50), (0.9, 0.1)),
        stage((10, 90), (0.1, 0.9)),
        stage((50, 0), (0.1, 0.9)),
    )
    pools = SamplerPools(2)
    pools.add(earlier, final=False)
    pools.add(integration, final=True)
    pools.add(generation, final=True)
    group = torch.tensor([0, 1])
    result = pools.result(group)
    assert result.integral == pytest.approx(1.0, rel=1e-14) and result.n_points == 250
    assert [c.integral for c in result.channels] == pytest.approx([105 / 250, 145 / 250], rel=1e-14)
    per_channel = StagePool(2)
    for s in (earlier, integration, generation):
        per_channel = per_channel.merge(StagePool.of_stage(s))
    assert per_channel.result(group).integral == pytest.approx(0.92, rel=1e-14)
    alone = SamplerPools(2)  # one sampler alone: its stages pool per channel as before
    alone.add(integration, final=True)
    alone.add(generation, final=True)
    assert alone.result(group).integral == pytest.approx(0.1 + 0.9, rel=1e-14)
    assert SamplerPools.from_arrays(pools.arrays("x_"), "x_").result(group).integral == pytest.approx(1.0, rel=1e-14)
