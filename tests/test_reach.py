"""The reach check (madnis.reach): an integral far below training's first batches fails it, one that agrees or one
large batch does not; automatic training then takes MadEvent's channel weights, then a flat share, saved with the
sampler."""

import math

import numpy as np
import pytest
import torch

from madnis import MadNIS, TrainingConfig
from madnis.reach import MIN_REFERENCE_BATCHES, REACH_SIGMAS, ReachCheck
from madnis.toys import CamelBack1D


def normal_batches(n: int, mean: float, spread: float, seed: int = 0) -> list[float]:
    return list(np.random.default_rng(seed).normal(mean, spread, n))


def test_a_final_integral_that_agrees_passes_and_one_far_below_fails():
    batches = normal_batches(60, 10.0, 1.0)  # the first 30 make the reference: error ~ 1 / sqrt(30)
    check = ReachCheck.of(batches, 10.0, 0.05)
    assert check.batches == 30 and check.reference == pytest.approx(np.mean(batches[:30]))
    assert check.reference_error == pytest.approx(np.std(batches[:30], ddof=1) / math.sqrt(30))
    assert abs(check.pull) < 3 and not check.failed and check.describe().endswith("agrees")
    low = check.reference - 6 * math.hypot(check.reference_error, 0.05)  # ~11 % of sigma no longer drawn
    failed = ReachCheck.of(batches, low, 0.05)
    assert failed.pull == pytest.approx(-6) and failed.failed and "below by more than" in failed.describe()
    high = ReachCheck.of(batches, check.reference + 6 * math.hypot(check.reference_error, 0.05), 0.05)
    assert not high.failed  # a tail training had not drawn yet: the weight-tail part of the error covers it


def test_one_large_batch_moves_the_reference_and_its_error_alike():
    """A batch that drew a weight 100x the others' (a tail) raises the reference and its error together: the pull of
    a final integral at the true value stays ~1 whatever the weight."""
    batches = normal_batches(40, 1.0, 0.05)
    for large in (10.0, 100.0, 1000.0):
        batches[3] = large
        check = ReachCheck.of(batches, 1.0, 0.01)
        assert -1.2 < check.pull < -0.8 and not check.failed


def test_skewed_healthy_batches_almost_never_fail():
    """Batch integrals as a young flow gives them (lognormal: mostly below the mean, rarely far above), the final
    integral unbiased with a small error: fewer than 1 in 1000 of 3000 such trainings fails."""
    rng = np.random.default_rng(1)
    exact = math.exp(0.5)  # the lognormal's mean
    failures = 0
    for _ in range(3000):
        batches = list(rng.lognormal(0.0, 1.0, 40))
        failures += ReachCheck.of(batches, rng.normal(exact, 0.01), 0.01).failed
    assert failures <= 3


def test_too_few_or_non_finite_batches_give_no_check():
    assert ReachCheck.of(normal_batches(2 * MIN_REFERENCE_BATCHES - 1, 1.0, 0.1), 1.0, 0.1) is None
    batches = normal_batches(2 * MIN_REFERENCE_BATCHES, 1.0, 0.1)
    assert ReachCheck.of(batches, 1.0, 0.1) is not None
    batches[0] = math.nan  # a batch without a finite estimate does not count
    assert ReachCheck.of(batches, 1.0, 0.1) is None
    assert REACH_SIGMAS == 5.0


def test_training_records_each_online_batch_integral_and_the_check_uses_the_first_half():
    config = TrainingConfig(steps=40, batch_size=256, buffered_steps=1, seed=3)
    madnis = MadNIS(CamelBack1D(), config)
    history = madnis.train()
    online = [p.integral for p in history.progress if p.online]
    assert madnis.trainer.batch_integrals == online and len(online) == 20
    result = madnis.integrate(20_000)
    check = madnis.reach_check(result)
    assert check.batches == 10 and check.reference == pytest.approx(np.mean(online[:10]))
    assert not check.failed and abs(result.integral - CamelBack1D().exact) < 4 * result.error


def test_an_opened_flat_share_draws_the_mixture_and_is_saved_with_the_sampler(tmp_path):
    madnis = MadNIS(CamelBack1D(), TrainingConfig(steps=10, batch_size=128, seed=4))
    madnis.train()
    assert madnis.sampler.defensive_fraction == 0  # 1 dimension: no share by default
    r = torch.rand(64, 1, dtype=torch.float64)
    channel = torch.zeros(64, dtype=torch.long)
    with torch.no_grad():
        log_q_flow = madnis.sampler.log_q(r, channel)
        madnis.open_flat_share(0.1)
        log_q = madnis.sampler.log_q(r, channel)
    assert torch.allclose(log_q.exp(), 0.9 * log_q_flow.exp() + 0.1)
    madnis.open_flat_share(0.05)  # a smaller share leaves the larger one
    assert madnis.sampler.defensive_fraction == 0.1
    madnis.save(tmp_path / "sampler.pt")
    loaded = MadNIS.load(tmp_path / "sampler.pt", CamelBack1D())
    assert loaded.sampler.defensive_fraction == 0.1
    with torch.no_grad():
        assert torch.allclose(loaded.sampler.log_q(r, channel), log_q)
    result = loaded.integrate(20_000, seed=5)  # the mixture's weights still estimate the integral
    assert abs(result.integral - CamelBack1D().exact) < 4 * result.error


def test_automatic_training_takes_the_remedies_in_turn_where_checks_fail_the_reach_check(tmp_path):
    """Every efficiency check's points integrate far below training's first batches (set here 30 % above the toy's
    integral, as a flow that later left a region gives them): the first failure puts MadEvent's channel weights in
    place of the learned ones, the second opens the flat share, each time the points so far are dropped and training
    goes on; the third has no remedy left and training ends. The saved sampler keeps both."""
    config = TrainingConfig(
        steps="auto", batch_size=256, seed=6, auto_min_steps=20, auto_window=4, auto_patience=3, auto_check_points=3000
    )
    madnis = MadNIS(CamelBack1D(), config)
    assert madnis.sampler.train_channel_weights and madnis.sampler.defensive_fraction == 0
    exact = CamelBack1D().exact
    fake = list(np.random.default_rng(0).normal(1.3 * exact, 0.01 * exact, 200))

    def closed_early(p) -> None:
        if p.step == 0:
            madnis.trainer.batch_integrals[:0] = fake  # what early batches of a flow that later closed give

    history = madnis.train(closed_early, n_events=1000)
    assert [c.failed for c in history.reach] == [True, True]
    first, second = history.reach
    assert "training goes on with MadEvent's channel weights (alpha^MG)" in first.describe()
    assert "training goes on with 0.1 of each channel's points flat" in second.describe()
    assert first.step < second.step < madnis.trainer.steps_done
    assert not madnis.sampler.train_channel_weights and madnis.sampler.defensive_fraction == 0.1
    assert history.checks and all(check.step > second.step for check in history.checks)
    assert all(step > second.step for step, _ in madnis.check_samples)  # the earlier samplers' points are gone
    assert madnis.trainer.kept_points <= 256 * (madnis.trainer.steps_done - second.step)
    result = madnis.integrate(20_000, seed=8)
    assert abs(result.integral - exact) < 4 * result.error
    madnis.save(tmp_path / "sampler.pt")
    loaded = MadNIS.load(tmp_path / "sampler.pt", CamelBack1D())
    assert not loaded.sampler.train_channel_weights and loaded.sampler.defensive_fraction == 0.1
