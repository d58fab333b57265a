"""Checkpoints: a saved and reloaded MadNIS gives identical samples; other versions are refused."""

import pytest
import torch

from madnis import MadNIS, TrainingConfig
from madnis.checkpoint import FORMAT_VERSION
from madnis.toys import CamelBack1D, ZeroChannelToy


def test_round_trip_gives_identical_samples(tmp_path):
    toy = ZeroChannelToy(0.0)
    m = MadNIS(
        toy,
        TrainingConfig(
            steps=8, batch_size=128, drop_after_steps=4, vegas_pretraining=True, vegas_iterations=2, vegas_bins=8
        ),
    )
    m.train()
    m.save(tmp_path / "state.pt")
    loaded = MadNIS.load(tmp_path / "state.pt", toy)
    assert loaded.sampler.active.tolist() == [True, True, False]
    torch.testing.assert_close(loaded.vegas_grids, m.vegas_grids)
    torch.testing.assert_close(loaded.statistics.sigma, m.statistics.sigma)
    a, b = m.sample_weighted(500, seed=7), loaded.sample_weighted(500, seed=7)
    assert torch.equal(a.r, b.r) and torch.equal(a.channel, b.channel) and torch.equal(a.weight, b.weight)
    assert m.integrate(1000, seed=3).integral == loaded.integrate(1000, seed=3).integral
    assert loaded.trainer.online_steps == 8 and loaded.trainer.dropped == [2]
    m.train(), loaded.train()  # training continues identically (optimiser state and schedule restored)
    assert all(torch.equal(a, b) for a, b in zip(m.sampler.parameters(), loaded.sampler.parameters()))
    fresh = MadNIS(toy, TrainingConfig(steps=8, batch_size=128)).sample_weighted(500, seed=7)
    assert not torch.equal(fresh.weight, a.weight)  # the comparison can fail: an untrained state differs


def test_other_format_version_and_other_integrand_are_refused(tmp_path):
    toy = CamelBack1D()
    m = MadNIS(toy, TrainingConfig(steps=0))
    path = tmp_path / "state.pt"
    m.save(path)
    state = torch.load(path, weights_only=True)
    torch.save({**state, "format_version": FORMAT_VERSION + 1}, path)
    with pytest.raises(ValueError, match="format version"):
        MadNIS.load(path, toy)
    m.save(path)
    with pytest.raises(ValueError, match="n_channels=3"):
        MadNIS.load(path, ZeroChannelToy())
