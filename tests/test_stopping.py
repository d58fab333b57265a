"""``steps = "auto"``: the stopping rule on synthetic efficiency sequences (injected clock), and in training."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from madnis import MadNIS, StoppingRule, TrainingConfig
from madnis.config import ConfigError
from madnis.integration import ChannelAccumulator, IntegrationResult, SamplerPools
from madnis.stopping import MIN_RECALIBRATION, EfficiencyCheck
from madnis.toys import CamelBack1D

POINTS = 1000


def weights_with_efficiency(efficiency: float) -> torch.Tensor:
    """POINTS weights whose efficiency is ``efficiency`` with w_max the largest weight (max_overweight = 0)."""
    big = (POINTS - 1) / (efficiency * POINTS - 1)
    return torch.cat([torch.tensor([big]), torch.ones(POINTS - 1)])


class Clock:
    """A clock the test advances: one training step = ``step_seconds``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_rule(efficiencies, n_events: float, step_seconds: float = 1.0, seconds_per_point: float = 1e-3, **rule):
    """Feed one online step per efficiency; the step after which the rule stops (None: never) and the rule."""
    clock = Clock()
    stopping = StoppingRule(n_events, max_overweight=0.0, clock=clock, **rule)
    for step, efficiency in enumerate(efficiencies):
        clock.now += step_seconds
        stopping.observe(step, weights_with_efficiency(efficiency), seconds_per_point * POINTS, integral=1.0)
        reason = stopping.stop(step)
        if reason is not None:
            return step, reason
    return None, None


def quick_auto(**overrides) -> TrainingConfig:
    """``steps = "auto"`` with a short window and patience: the rule decides within a few dozen toy steps."""
    return TrainingConfig(steps="auto", batch_size=256, auto_min_steps=20, auto_window=4, auto_patience=3, **overrides)


def test_efficiency_of_the_synthetic_weights():
    from madnis.unweighting import max_weight, unweighting_efficiency

    w = weights_with_efficiency(0.2)
    assert unweighting_efficiency(w, max_weight(w, 0.0)) == pytest.approx(0.2)


def test_falls_then_flattens_stops_after_the_patience():
    # efficiency rises to 0.5 at step 40 and stays: the projection k + 1 + 1e5 / eps * 1e-3 s falls until 40
    efficiencies = [min(0.1 + 0.01 * k, 0.5) for k in range(200)]
    step, reason = run_rule(efficiencies, 1e5, window=1, patience=5, min_steps=10, patience_share=0.0)
    assert reason.best.step == 40 and reason.best.efficiency == pytest.approx(0.5)
    assert step == 40 + 5
    text = reason.describe()
    assert text.startswith("projected time to 100000 events stopped falling at step 41: 241.0 s ")
    assert "stopped after step 46" in text


def test_cheap_stops_at_min_steps_and_expensive_trains_longer():
    efficiencies = [min(0.1 + 0.002 * k, 0.6) for k in range(1000)]
    cheap, _ = run_rule(efficiencies, 1e2, window=4, patience=5, min_steps=20)
    expensive, reason = run_rule(efficiencies, 1e6, window=4, patience=5, min_steps=20)
    assert cheap == 19  # the first projection is already the best: training never pays
    assert expensive is not None and expensive > 250 and reason.best.step >= 240
    assert expensive - reason.best.step >= 0.25 * reason.best.total  # 1 s per step: a quarter of the best projection


def test_noisy_plateau_does_not_stop_training_early():
    # rises to 0.3, a noisy plateau of 40 steps, then rises to 0.6 (1e6 events at 1 ms per point: a 1 s step pays)
    generator = torch.Generator().manual_seed(1)
    noise = 1 + 0.1 * (torch.rand(300, generator=generator) - 0.5)
    trend = [0.1 + 0.01 * k for k in range(20)] + [0.3] * 40 + [min(0.3 + 0.01 * k, 0.6) for k in range(240)]
    efficiencies = [float(e * n) for e, n in zip(trend, noise)]
    step, reason = run_rule(efficiencies, 1e6, window=5, patience=5, min_steps=10)
    assert step is None or reason.best.step > 80  # past the plateau
    early, _ = run_rule(efficiencies, 1e6, window=5, patience=5, min_steps=10, patience_share=0.0)
    assert early < 60  # the time share is what carries training over the plateau


def test_max_minutes_with_an_injected_clock():
    efficiencies = [min(0.1 + 0.001 * k, 0.9) for k in range(1000)]
    step, reason = run_rule(efficiencies, 1e9, step_seconds=6.0, max_seconds=60 * 2, window=3)
    assert step == 19 and reason.max_minutes_reached  # 20 steps x 6 s = 2 min
    text = reason.describe("madnis_max_minutes")
    assert text.startswith("madnis_max_minutes reached after step 20 (120.0 s of training)")


def test_no_projection_counts_before_the_window_is_full():
    clock = Clock()
    stopping = StoppingRule(1e3, window=3, patience=1, min_steps=0, patience_share=0.0, clock=clock)
    for step in range(2):
        stopping.observe(step, weights_with_efficiency(0.9 - 0.1 * step), 1.0, 1.0)
        assert stopping.best is None and stopping.stop(step) is None


def test_events_may_follow_the_running_integral():
    stopping = StoppingRule(lambda integral: 100 * integral, window=1, clock=Clock())
    assert stopping.observe(0, weights_with_efficiency(0.5), 1.0, integral=3.0).n_events == 300


def test_auto_steps_need_a_constant_learning_rate_and_events():
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainingConfig(steps="auto", lr_schedule="cosine")
    with pytest.raises(ConfigError, match="steps"):
        TrainingConfig(steps="many")
    with pytest.raises(ValueError, match="n_events"):
        MadNIS(CamelBack1D(), TrainingConfig(steps="auto", vegas_pretraining=False)).train()


def test_auto_training_stops_and_says_why():
    config = quick_auto()
    progress = []
    history = MadNIS(CamelBack1D(prior="bw"), config).train(progress.append, n_events=100)
    assert history.stop is not None and not history.stop.max_minutes_reached
    assert len(history) == history.stop.steps >= 20 and progress[-1].last and not progress[-2].last
    assert all(p.projection is not None and math.isfinite(p.projection.total) for p in progress)
    assert "stopped falling" in history.stop.describe()


def test_fixed_steps_are_unchanged():
    history = MadNIS(CamelBack1D(), TrainingConfig(steps=7, batch_size=128, vegas_pretraining=False)).train()
    assert len(history) == 7 and history.stop is None and history[-1].last and history[-1].projection is None


def test_recalibration_scales_the_estimates_and_the_check_becomes_the_best():
    clock = Clock()
    stopping = StoppingRule(1e3, window=1, max_overweight=0.0, clock=clock, min_steps=0, patience=2)
    stopping.observe(0, weights_with_efficiency(0.5), 1.0, 1.0)
    assert stopping.best is not None and stopping.last.efficiency == pytest.approx(0.5)
    clock.now = 10.0
    stopping.recalibrate(0.3, measured=0.17)  # the check measured 0.17 (not the scaled 0.15) after 10 s
    assert stopping.best.efficiency == 0.17 and stopping.best.elapsed == 10.0 and stopping.since_best == 0
    assert stopping.observe(1, weights_with_efficiency(0.5), 1.0, 1.0).efficiency == pytest.approx(0.15)
    # scaled estimates that promise no less time than the check's measured projection do not keep training going
    clock.now = 20.0
    stopping.observe(2, weights_with_efficiency(0.55), 1.0, 1.0)
    assert stopping.best.efficiency == 0.17 and stopping.stop(2) is not None


def test_the_projection_counts_the_events_of_points_drawn_already():
    """Kept training points count at the estimated efficiency, a resumed check's kept points at the efficiency it
    measured; the generation draws only the rest (none once they give every event)."""
    clock = Clock()
    stopping = StoppingRule(1e3, window=1, max_overweight=0.0, clock=clock, min_steps=0)
    projection = stopping.observe(0, weights_with_efficiency(0.5), 1.0, 1.0, kept_points=600)
    assert projection.ready_events == pytest.approx(300) and projection.points_to_draw == pytest.approx(1400)
    assert (
        projection.generation == pytest.approx(1400 * 1e-3) and "300 of them from points drawn" in projection.describe()
    )
    stopping.recalibrate(0.5, measured=0.25, kept_check_points=2000)  # the check's 2000 points give 500 events
    assert stopping.best.ready_events == pytest.approx(800) and stopping.best.points_to_draw == pytest.approx(800)
    assert stopping.observe(1, weights_with_efficiency(0.5), 1.0, 1.0, kept_points=600).ready_events == pytest.approx(
        650
    )
    assert stopping.observe(2, weights_with_efficiency(0.5), 1.0, 1.0, kept_points=4000).generation == 0.0


@pytest.mark.parametrize("train_channel_weights", [False, True])
def test_an_optimistic_estimate_is_checked_on_fresh_points_and_training_goes_on(monkeypatch, train_channel_weights):
    """The window claims 100 % efficiency: the first check measures far less, scales the estimates to it and training
    resumes; the next check agrees with the scaled estimate and training stops. The checks' points are counted and
    kept for the integral, each check's sample pooled as a whole (with learned channel weights each check's are its
    own)."""
    monkeypatch.setattr(StoppingRule, "efficiency", lambda self, n_events: self.calibration * 1.0)
    config = quick_auto(auto_check_points=5000, train_channel_weights=train_channel_weights)
    m = MadNIS(CamelBack1D(prior="bw"), config)
    history = m.train(n_events=100)
    first, last = history.checks[0], history.checks[-1]
    assert first.estimate == 1.0 and first.measured < 0.7 and first.resumed
    assert not last.resumed and len(history.checks) >= 2 and "efficiency check after step" in first.describe()
    assert history.stop.steps == len(history) > first.step  # the step count goes on after the check
    trained = sum(256 for p in history.progress if p.online)
    assert m.n_calls == m.config.vegas_iterations * 256 * m.sampler.n_groups + trained + 5000 * len(history.checks)
    # every check's points are kept, also those of the sampler that a check sent back to training: each sample
    # estimates the integral (per channel, the I_i of its own channel weights), so the samples pool as wholes
    taken = m.take_check_samples()
    assert [len(sample.weight) for _, sample in taken] == [check.points for check in history.checks]
    assert [step for step, _ in taken] == [check.step for check in history.checks]
    assert m.sampler_step == (history.checks[-2].step if last.fell else m.trainer.steps_done)
    pools = SamplerPools(m.sampler.n_channels)
    for step, sample in taken:
        within = sample.weight * sample.channel_probability
        pools.add(
            ChannelAccumulator.of(m.sampler.n_channels, sample.channel, within, sample.ok), step == m.sampler_step
        )
    pooled = pools.result(m.sampler.group_of_channel.cpu())
    assert pooled.n_points == 5000 * len(taken)
    assert abs(pooled.integral - CamelBack1D().exact) < 4 * pooled.error


def test_a_check_after_resumed_training_that_did_not_pay_stops_it():
    check = lambda measured, previous: EfficiencyCheck(100, 1000, 0.5, measured, previous, False)  # noqa: E731
    assert check(0.2, None).resumed  # first check, far below the estimate
    assert check(0.3, 0.2).resumed  # resumed training raised it by more than the tolerance
    assert not check(0.2, 0.2).resumed and "did not pay" in check(0.2, 0.2).describe()
    assert not check(0.4, 0.2).resumed and "the estimate holds" in check(0.4, 0.2).describe()
    assert not EfficiencyCheck(100, 1000, 0.5, 0.2, None, True).resumed


def test_training_stops_at_the_second_check_when_the_efficiency_stays_below_the_estimate(monkeypatch):
    """Lucky windows claim 100 % whatever the checks found, every check measures 30 %: the first check resumes
    training, the second is as far below the claim but sees no gain since the first and stops it (without that rule
    every later check would resume again until max_minutes)."""
    monkeypatch.setattr(StoppingRule, "efficiency", lambda self, n_events: 1.0)
    monkeypatch.setattr(IntegrationResult, "unweighting_efficiency", property(lambda self: 0.3))
    config = quick_auto(auto_check_points=2000, max_minutes=0.5)
    # events enough that generation dominates the projection: the windows' 100 % makes new best projections
    history = MadNIS(CamelBack1D(prior="bw"), config).train(n_events=100_000)
    assert [check.resumed for check in history.checks] == [True, False]
    assert history.checks[1].below_estimate and history.checks[1].stalled
    assert not history.stop.max_minutes_reached


@pytest.mark.parametrize("train_channel_weights", [False, True])
def test_training_ends_with_the_checked_sampler_that_measured_higher(monkeypatch, train_channel_weights):
    """The first check measures 30 % (far below the window's 100 %: training resumes), the second 10 %: training stops
    and the sampler goes back to what it was at the first check, which measured higher; its points are labelled by
    that check's step. Both checks' points stay, each a sample of the sampler that drew it."""
    monkeypatch.setattr(StoppingRule, "efficiency", lambda self, n_events: 1.0)
    measured = iter([0.3, 0.1])
    states = []
    integrate_sample = MadNIS.integrate_sample

    def checked(self, n_points, seed=None):
        states.append({k: v.clone() for k, v in self.sampler.state_dict().items()})
        result, sample = integrate_sample(self, n_points, seed)
        result.checked_efficiency = next(measured)
        return result, sample

    monkeypatch.setattr(MadNIS, "integrate_sample", checked)
    monkeypatch.setattr(IntegrationResult, "unweighting_efficiency", property(lambda self: self.checked_efficiency))
    config = quick_auto(auto_check_points=2000, max_minutes=0.5, train_channel_weights=train_channel_weights)
    m = MadNIS(CamelBack1D(prior="bw"), config)
    history = m.train(n_events=100_000)
    first, last = history.checks
    assert first.resumed and last.fell and last.kept_step == first.step < last.step
    assert "the sampler of step" in last.describe()
    assert m.sampler_step == first.step != m.trainer.steps_done
    assert len(states) == 2 and any(not torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert all(torch.equal(v, states[0][k]) for k, v in m.sampler.state_dict().items())
    kept = m.take_check_samples()
    assert [step for step, _ in kept] == [first.step, last.step]


def test_the_check_draws_the_generation_sample_less_the_kept_training_batches(monkeypatch):
    """The kept later training batches unweight into events too (here with fixed channel weights): the check
    draws n_events / estimate minus their points, and the training's last projection counted them."""
    monkeypatch.setattr(StoppingRule, "efficiency", lambda self, n_events: self.calibration * 0.2)
    config = quick_auto(auto_check_points=100_000, train_channel_weights=False)
    m = MadNIS(CamelBack1D(prior="bw"), config)
    history = m.train(n_events=10_000)
    assert len(history.checks) == 1 and not history.checks[0].resumed
    kept = m.trainer.kept_points
    assert kept > 0 and history.checks[0].points == 10_000 / 0.2 - kept
    last = history.progress[-1].projection
    assert last.ready_events == pytest.approx(0.2 * kept) and last.points_to_draw == pytest.approx(10_000 / 0.2 - kept)


def test_one_check_scales_the_estimates_down_by_at_most_a_factor_4():
    """A young sampler's check far below the estimate (a handful of weights) scales the later estimates by 1/4, not
    by its full ratio, and says so; a moderate one scales by its ratio."""
    clock = Clock()
    stopping = StoppingRule(1e3, window=1, max_overweight=0.0, clock=clock, min_steps=0, patience=2)
    stopping.observe(0, weights_with_efficiency(0.5), 1.0, 1.0)
    far = EfficiencyCheck(step=117, points=10_000, estimate=0.5, measured=0.01, previous=None, out_of_time=False)
    near = replace(far, measured=0.25)
    assert far.scale == MIN_RECALIBRATION and near.scale == pytest.approx(0.5)
    stopping.recalibrate(far.scale, measured=far.measured)
    assert stopping.observe(1, weights_with_efficiency(0.5), 1.0, 1.0).efficiency == pytest.approx(
        0.5 * MIN_RECALIBRATION
    )
    stopping.recalibrate(near.scale, measured=near.measured)
    assert stopping.observe(2, weights_with_efficiency(0.5), 1.0, 1.0).efficiency == pytest.approx(0.5 * 0.25 * 0.5)
    assert far.resumed and "scaled by 0.25, a check's most" in far.describe()
    assert near.resumed and "scaled to it" in near.describe()


def weights_with_spread(spread: float) -> torch.Tensor:
    """POINTS weights of mean 1 and std ~``spread`` (half 1 - spread, half 1 + spread) beside one weight of 4: the
    efficiency (w_max the largest) stays ~1/4 whatever the spread."""
    half = torch.full(((POINTS - 1) // 2,), spread)
    return torch.cat([torch.tensor([4.0]), 1.0 - half, 1.0 + half])


def test_a_precision_target_trains_while_the_spread_falls_and_the_events_alone_would_stop():
    spreads = [max(0.9 - 0.02 * k, 0.1) for k in range(200)]  # falls until step 40, then flat

    def run(relative_error):
        clock = Clock()
        rule = dict(window=1, patience=5, min_steps=10, patience_share=0.0, max_overweight=0.0, clock=clock)
        stopping = StoppingRule(1e4, relative_error=relative_error, **rule)
        for step, spread in enumerate(spreads):
            clock.now += 1.0
            projection = stopping.observe(step, weights_with_spread(spread), 1e-3 * POINTS, integral=1.0)
            reason = stopping.stop(step)
            if reason is not None:
                return projection, reason
        raise AssertionError("never stopped")

    _, events_only = run(None)
    assert events_only.best.step == 0 and events_only.best.precision_points == 0  # the efficiency never moves
    last, precise = run(lambda n_events: 5e-4)
    assert precise.best.step == 40  # training pays while the spread falls: 4e6 x spread^2 points to draw
    window = weights_with_spread(spreads[last.step])
    assert last.spread == pytest.approx(float(window.std() / window.mean()))
    assert last.points_to_draw == pytest.approx((last.spread / 5e-4) ** 2)
    assert last.points_to_draw > 1e4 / last.efficiency  # more than the events need
    assert "asks" in precise.describe() and "more than the events" in precise.describe()
