"""The defensive mixture (madnis.sampler): each channel's density is (1 - eps) q_flow + eps, sampled as such."""

import math
from dataclasses import replace

import pytest
import torch

from madnis import MadNIS, TrainingConfig
from madnis.sampler import DrawRecord
from madnis.toys import ManyChannels10D, TwoResonances4D

EPS = 0.25


@pytest.fixture(scope="module")
def trained() -> MadNIS:
    """A sampler trained briefly with a large flat share (its flow is already far from flat)."""
    m = MadNIS(TwoResonances4D(), TrainingConfig(steps=60, batch_size=512, defensive_fraction=EPS, seed=3))
    m.train()
    return m


def test_sampled_log_q_is_the_mixture_density_of_the_point(trained):
    """The log q returned with each point (flow-drawn or flat-drawn) is the mixture's density at that point."""
    channel = torch.arange(4000) % 2
    r, log_q = trained.sampler.sample(channel, torch.Generator().manual_seed(1))
    with torch.no_grad():
        recomputed = trained.sampler.log_q(r, channel)
        flow_only = trained.sampler.flow.log_prob(r, trained.sampler.group_of_channel[channel])
    torch.testing.assert_close(log_q, recomputed, atol=2e-4, rtol=0)
    expected = torch.log((1 - EPS) * flow_only.double().exp() + EPS)
    torch.testing.assert_close(recomputed.double(), expected, atol=2e-4, rtol=0)


def test_training_log_q_from_the_draw_record_equals_the_recomputed_one(trained):
    """An online batch's log q reuses the flow's splines of drawing it (flow-drawn and flat points alike): the
    same value and the same gradient as evaluating the mixture's density afresh."""
    sampler = trained.sampler.to(torch.float64)
    try:
        channel = torch.arange(2000) % 2
        record = DrawRecord()
        r, log_q = sampler.sample(channel, torch.Generator().manual_seed(8), record)
        assert len(record.parts) == 2 and all(index is not None for index, _ in record.parts)
        results = []
        for replay in (record, None):
            sampler.flow.zero_grad()
            value = sampler.log_q(r, channel, replay)
            value.square().sum().backward()
            results.append((value.detach(), torch.cat([p.grad.flatten() for p in sampler.flow.parameters()])))
        (replayed, gradient_replayed), (recomputed, gradient_recomputed) = results
        torch.testing.assert_close(replayed, log_q, rtol=0, atol=1e-12)
        torch.testing.assert_close(replayed, recomputed, rtol=0, atol=1e-9)
        torch.testing.assert_close(gradient_replayed, gradient_recomputed, rtol=1e-7, atol=1e-9)
    finally:
        trained.sampler.to(torch.float32)


@pytest.mark.parametrize("kept", ["some of each share", "no flat point", "no flow-drawn point"])
def test_the_record_of_some_points_gives_their_log_q(trained, kept):
    """``DrawRecord.take`` (training's steps on the points inside the cuts): the record of the points a mask keeps
    replays their log q as evaluating it afresh, also where the mask keeps no point of one share (a W+2j batch's
    flat points can all lie outside the cuts)."""
    sampler = trained.sampler.to(torch.float64)
    try:
        channel = torch.arange(600) % 2
        record = DrawRecord()
        r, _ = sampler.sample(channel, torch.Generator().manual_seed(9), record)
        (flow_drawn, _), (flat, _) = record.parts
        keep = torch.zeros(len(channel), dtype=torch.bool)
        if kept != "no flow-drawn point":
            keep[flow_drawn[::3]] = True
        if kept != "no flat point":
            keep[flat[1::2]] = True
        taken = record.take(keep)
        assert len(taken.parts) == (2 if kept == "some of each share" else 1)
        with torch.no_grad():
            replayed = sampler.log_q(r[keep], channel[keep], taken)
            recomputed = sampler.log_q(r[keep], channel[keep])
        torch.testing.assert_close(replayed, recomputed, rtol=0, atol=1e-9)
    finally:
        trained.sampler.to(torch.float32)


def test_flat_share_is_drawn_where_the_flow_is_thin(trained):
    """About eps of the points land as a flat draw would: the share of points in the region where the trained
    flow puts almost nothing (q_flow < 0.01) is eps times that region's volume, not the flow's ~0."""
    channel = torch.zeros(40_000, dtype=torch.long)
    r, _ = trained.sampler.sample(channel, torch.Generator().manual_seed(2))
    volume_points = torch.rand((200_000, 4), generator=torch.Generator().manual_seed(3))

    def thin_share(points: torch.Tensor) -> float:
        """Share of ``points`` where channel 0's flow density is below 0.01."""
        group = trained.sampler.group_of_channel[torch.zeros(len(points), dtype=torch.long)]
        with torch.no_grad():
            return float((trained.sampler.flow.log_prob(points, group).exp() < 0.01).float().mean())

    thin_volume, thin_drawn = thin_share(volume_points), thin_share(r)
    assert thin_volume > 0.2  # the brief training already emptied a good part of the cube
    expected = EPS * thin_volume  # the flow's own share there is below 0.01 * volume
    assert abs(thin_drawn - expected) < 5 * math.sqrt(expected / len(r)) + 0.01 * thin_volume


def test_every_weight_is_bounded_by_value_over_eps(trained):
    """The mixture's density never falls below eps, so no weight exceeds alpha value / eps."""
    channel = torch.arange(20_000) % 2
    _, log_q = trained.sampler.sample(channel, torch.Generator().manual_seed(4))
    assert float(log_q.exp().min()) >= EPS * (1 - 1e-5)


def test_mixture_integral_is_unbiased(trained):
    """The toy's exact integral within 4 sigma of an integration with the mixture's weights."""
    result = trained.integrate(200_000, seed=5)
    assert abs(result.integral - TwoResonances4D().exact) < 4 * result.error


def test_zero_fraction_draws_the_flow_itself():
    """eps = 0 is the plain flow: the same points and densities as the flow's own sampling."""
    config = TrainingConfig(steps=0, seed=1)
    m = MadNIS(TwoResonances4D(), replace(config, defensive_fraction=0.0))
    channel = torch.arange(100) % 2
    r, log_q = m.sampler.sample(channel, torch.Generator().manual_seed(6))
    r_flow, log_q_flow = m.sampler.flow.sample(m.sampler.group_of_channel[channel], torch.Generator().manual_seed(6))
    assert torch.equal(r, r_flow) and torch.equal(log_q, log_q_flow)


def test_auto_fraction_follows_the_dimension_and_a_number_is_kept():
    auto = TrainingConfig(defensive_fraction="auto")
    assert [auto.defensive_share(ndim) for ndim in (4, 7, 8, 10)] == [0.0, 0.0, 0.1, 0.1]
    # two jets or more take it from 7 dimensions (p p > w+ j j), not with one (p p > t t~ j) nor at 4 (p p > j j)
    assert [auto.defensive_share(7, jets) for jets in (0, 1, 2, 3)] == [0.0, 0.0, 0.1, 0.1]
    assert [auto.defensive_share(4, 2), auto.defensive_share(10, 0)] == [0.0, 0.1]
    assert TrainingConfig(defensive_fraction=0.0).defensive_share(7, 2) == 0.0
    assert TrainingConfig(defensive_fraction=0.3).defensive_share(10) == 0.3
    assert MadNIS(ManyChannels10D(), replace(auto, steps=0)).sampler.defensive_fraction == 0.1
    assert MadNIS(TwoResonances4D(), replace(auto, steps=0)).sampler.defensive_fraction == 0.0


def test_fraction_outside_unit_interval_is_a_one_line_error():
    for value in (1.0, -0.1, "half"):
        with pytest.raises(ValueError, match="defensive_fraction must be in \\[0, 1\\) or 'auto'"):
            TrainingConfig(defensive_fraction=value)


def test_saved_sampler_keeps_its_share(trained, tmp_path):
    """A reloaded sampler (madnis_reuse, gridpacks) draws from the same mixture: the same densities at the same points."""
    trained.save(tmp_path / "sampler.pt")
    loaded = MadNIS.load(tmp_path / "sampler.pt", TwoResonances4D())
    assert loaded.sampler.defensive_fraction == EPS
    r = torch.rand((1000, 4), generator=torch.Generator().manual_seed(7))
    channel = torch.arange(1000) % 2
    with torch.no_grad():
        torch.testing.assert_close(loaded.sampler.log_q(r, channel), trained.sampler.log_q(r, channel))
