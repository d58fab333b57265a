"""Channel dropping: which channels go, weights renormalised over the rest, integral stays unbiased."""

import torch

from madnis import MadNIS, TrainingConfig
from madnis.config import AUTO_DROP_STEP
from madnis.dropping import channels_to_drop, restrict_channel_weights
from madnis.toys import ZeroChannelToy


def test_smallest_channels_below_threshold_are_dropped():
    integral = torch.tensor([5.0, 0.004, 0.0, 3.0, 0.005, -0.002], dtype=torch.float64)
    active = torch.ones(6, dtype=torch.bool)
    drop = channels_to_drop(integral, active, threshold=1e-3)  # 1e-3 * 8.011 = 0.008
    assert drop.tolist() == [False, True, True, False, False, True]
    assert not channels_to_drop(integral, active, threshold=0.0).any()
    only = torch.tensor([True, False, False, False, False, False])
    assert not channels_to_drop(integral, only, threshold=0.5).any()  # never drops the last channel


def test_restricted_weights_sum_to_one_over_active_channels():
    alpha = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    active = torch.tensor([True, True, False])
    restricted = restrict_channel_weights(alpha, active)
    torch.testing.assert_close(restricted, torch.tensor([[0.4, 0.6, 0.0], [0.5, 0.5, 0.0]]))


def _pulls(leak: float, config: dict) -> list[float]:
    pulls = []
    for seed in range(4):
        toy = ZeroChannelToy(leak)
        m = MadNIS(toy, TrainingConfig(steps=12, batch_size=256, stratified_warmup_steps=4, seed=seed, **config))
        history = m.train()
        assert history[-1].dropped_channels == [2] and history[-1].active_channels == 2
        result = m.integrate(6000)
        assert result.channels[2].n_points == 0
        pulls.append((result.integral - toy.exact) / result.error)
    return pulls


def test_dropping_zero_channel_keeps_integral_unbiased():
    pulls = _pulls(0.0, dict(drop_after_steps=6))
    assert all(abs(p) < 3 for p in pulls), pulls


def test_forced_drop_of_contributing_channel_redistributes_its_weight():
    # channel 2 carries 20% of the integral; dropped, its weight must go to channels 0 and 1
    pulls = _pulls(0.2, dict(drop_after_steps=6, drop_threshold=0.3))
    assert all(abs(p) < 3 for p in pulls), pulls


def test_drop_step_is_half_the_budget_or_with_auto_its_own_setting():
    assert TrainingConfig(steps=400).drop_step == 200
    # with steps = auto the minimum of steps may be tuned without moving the drop (stop32_ablations.md section 2)
    assert TrainingConfig(steps="auto", auto_min_steps=40).drop_step == AUTO_DROP_STEP
    assert TrainingConfig(steps="auto", auto_min_steps=400).drop_step == AUTO_DROP_STEP
    assert TrainingConfig(steps="auto", drop_after_steps=7).drop_step == 7
