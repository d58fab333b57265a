"""Shared run orchestration on toy sources: exact event counts, per-process <init> lines, no partial LHE, re-use."""

from __future__ import annotations

import gzip
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from madnis_plugin.lhe import Banner, EventRecords, LHEInit
from madnis_plugin.run import (
    ProcessSource,
    RunSettings,
    SamplerReuseError,
    madevent_summary,
    run_processes,
    saved_sampler_path,
    share_events,
)
from madnis_plugin.run.events import MIN_INTEGRATION_POINTS, integration_points, precision_points, training_share

from madnis import MadNIS, TrainingConfig
from madnis.toys import CamelBack1D, TwoResonances4D


def toy_records(r: torch.Tensor, channel: torch.Tensor, generator: np.random.Generator) -> EventRecords:
    """One 'particle' per event carrying the point x (the toy's feature) in pz: enough to check what was written."""
    x = CamelBack1D(prior="bw")(r.double(), channel).features[:, 0]
    records = EventRecords.empty(len(r), 1)
    records.nup[:] = 1
    records.pdg[:] = 22
    records.status[:] = 1
    records.momenta[:, 0, 2] = x.double().numpy()
    return records


def toy_source(name: str, lprup: int, records=toy_records) -> ProcessSource:
    return ProcessSource(name=name, integrand=CamelBack1D(prior="bw"), event_records=records, lprup=lprup)


def settings(tmp_path, nevents: int) -> RunSettings:
    return RunSettings(
        nevents=nevents,
        output_dir=tmp_path,
        integration_points=4000,
        weighted_batch=2000,
        training=TrainingConfig(steps=15, batch_size=256, seed=2),
        save_models=False,
    )


def test_share_events_is_exact_and_proportional():
    assert share_events(10, [1.0, 1.0, 1.0]) in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert sum(share_events(997, [844.3, 46.5, 0.01])) == 997
    assert share_events(1000, [3.0, 1.0, 0.0]) == [750, 250, 0]
    with pytest.raises(ValueError):
        share_events(5, [0.0, 0.0])


def test_training_share_counts_sources_not_yet_trained_at_the_mean_of_those_known():
    assert training_share(900, 3, [])(5.0) == 300
    assert training_share(900, 3, [1.0])(2.0) == pytest.approx(900 * 2 / 4.5)
    assert training_share(900, 3, [1.0, 4.0])(-3.0) == pytest.approx(900 * 3 / 8)
    assert training_share(900, 3, [0.0])(0.0) == 300


def test_integration_points_follow_the_cross_sections_at_the_same_expected_error():
    assert integration_points([100_000], [413.0], 0) == 100_000
    assert [integration_points([9000] * 3, [2.0, 2.0, 2.0], i) for i in range(3)] == [9000] * 3
    sigma, configured = [413.0, 141.0, 21.4], [100_000] * 3  # p p > t t~ j's P-dirs
    points = [integration_points(configured, sigma, i) for i in range(3)]
    assert points[0] > 100_000 > points[1] > points[2] > MIN_INTEGRATION_POINTS and sum(points) < 180_000
    shares = np.array(sigma) / sum(sigma)
    variance = lambda n: float(np.sum(shares**2 / np.array(n)))  # noqa: E731  (relative, per unit spread)
    assert variance(points) <= variance(configured) < 1.001 * variance(points)
    # proportional to sigma is the fewest points at that variance: moving points either way raises it
    assert variance([points[0] - 5000, points[1] + 5000, points[2]]) > variance(points)
    assert variance([points[0] + 5000, points[1] - 5000, points[2]]) > variance(points)
    # a source still training elsewhere counts at the mean of the known; a tiny share keeps a floor
    assert integration_points([100] * 3, [1.0, None, 3.0], 0) == integration_points([100] * 3, [1.0, 2.0, 3.0], 0)
    assert integration_points([50_000, 50_000], [1.0, 1e-6], 1) == MIN_INTEGRATION_POINTS
    assert integration_points([500, 500], [1.0, 1e-6], 1) == 500
    assert integration_points([700, 800], [0.0, 0.0], 1) == 800


class NineCamels(CamelBack1D):
    """The camel back times 9: a source with 90 % of a run's sigma beside a plain one."""

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return 9 * super().f(x)


def test_a_small_source_integrates_fewer_points(tmp_path):
    lines: list[str] = []
    big = ProcessSource(name="P1_big", integrand=NineCamels(prior="bw"), event_records=toy_records, lprup=1)
    run = replace(settings(tmp_path, 300), integration_points=8000)
    result = run_processes([big, toy_source("P2_small", 2)], run, Banner(), LHEInit(processes=[]), lines.append)
    asked = [int(line.split("(asked ")[1].split()[0]) for line in lines if "integration: sigma" in line]
    assert asked[0] == pytest.approx(8000 * 0.9 / 0.82, rel=0.05) and asked[1] == MIN_INTEGRATION_POINTS
    big_points, small_points = (s.result.n_points for s in result.sources)
    assert small_points < big_points and small_points <= 768 + 1000  # the kept training batches (3 x 256) on top
    assert abs(result.cross_section - 10 * CamelBack1D().exact) < 5 * result.error


def test_two_sources_give_exactly_n_events(tmp_path):
    lines = []
    result = run_processes(
        [toy_source("P1_a", 1), toy_source("P2_b", 2)],
        settings(tmp_path, 1001),
        Banner(),
        LHEInit(processes=[]),
        log=lines.append,
    )
    text = gzip.open(result.lhe_path, "rt").read()
    assert text.count("<event>") == 1001 == result.nevents
    assert sum(s.n_events for s in result.sources) == 1001
    init = text.split("<init>\n")[1].splitlines()
    assert init[0].endswith("-4 2") and init[1].split()[3] == "1" and init[2].split()[3] == "2"
    assert any("Cross-section :" in line for line in lines) and any("step" in line for line in lines)
    exact = CamelBack1D().exact
    assert abs(result.cross_section - 2 * exact) < 5 * result.error
    weights = np.array([float(block.splitlines()[0].split()[2]) for block in text.split("<event>\n")[1:]])
    assert weights.mean() == pytest.approx(result.cross_section, rel=1e-6)
    x = np.array([float(block.splitlines()[1].split()[8]) for block in text.split("<event>\n")[1:]])
    assert np.mean(np.abs(x - 0.25) < 0.1) == pytest.approx(0.5, abs=0.06)  # events follow the two equal peaks


def test_interrupt_while_building_events_leaves_no_lhe(tmp_path):
    def interrupted(r, channel, generator):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_processes(
            [toy_source("P1_a", 1, interrupted)],
            settings(tmp_path, 50),
            Banner(),
            LHEInit(processes=[]),
            log=lambda line: None,
        )
    assert not [p for p in tmp_path.iterdir() if ".lhe" in p.name]


def test_summary_format():
    text = madevent_summary("run_01", "tag_1", 844.3, 1.85, 10000)
    assert "  === Results Summary for run: run_01 tag: tag_1 ===" in text
    assert "     Cross-section :   844.3 +- 1.85 pb" in text and "     Nb of events :  10000" in text


def event_x(result) -> np.ndarray:
    """The toy point x of every written event (pz of its one particle), in file order."""
    text = gzip.open(result.lhe_path, "rt").read()
    return np.array([float(block.splitlines()[1].split()[8]) for block in text.split("<event>\n")[1:]])


def test_reused_sampler_skips_training_and_the_seed_drives_the_events(tmp_path):
    def run(seed: int, reuse: bool, lines: list[str]):
        config = replace(
            settings(tmp_path, 300),
            reuse=reuse,
            save_models=True,
            training=TrainingConfig(steps=15, batch_size=256, seed=seed),
        )
        return run_processes([toy_source("P1_a", 1)], config, Banner(), LHEInit(processes=[]), log=lines.append)

    first_lines, same_lines, other_lines = [], [], []
    first = run(2, reuse=True, lines=first_lines)  # nothing saved yet: trains and says so
    saved = saved_sampler_path(tmp_path, "P1_a")
    assert any("No trained sampler" in line for line in first_lines) and any("step" in line for line in first_lines)
    assert saved.exists() and first.sources[0].trained.reused_from is None
    first_x = event_x(first)

    same = run(2, reuse=True, lines=same_lines)  # the training run's seed; its training batches are not there
    assert f"Reusing trained sampler from {saved}" in "\n".join(same_lines)
    assert not any("step" in line or "Training" in line for line in same_lines)
    assert same.sources[0].trained.reused_from == saved and same.sources[0].trained.losses == []
    assert abs(same.cross_section - first.cross_section) < 5 * np.hypot(same.error, first.error)
    again = run(2, reuse=True, lines=[])  # the seed repeats the integral and the events
    assert again.cross_section == same.cross_section and np.array_equal(event_x(again), event_x(same))

    other = run(5, reuse=True, lines=other_lines)  # another seed: independent integration and events
    source = other.sources[0]
    assert not any("step" in line for line in other_lines)
    assert source.training_calls == 0 and source.weighted_points >= 4000  # the integration's points are weighted
    assert source.n_calls == source.weighted_points + 300 == source.result.n_points + 300  # + event records
    assert other.cross_section != first.cross_section
    assert abs(other.cross_section - first.cross_section) < 5 * np.hypot(other.error, first.error)
    assert abs(other.cross_section - CamelBack1D().exact) < 5 * other.error
    other_x = event_x(other)
    assert len(set(other_x) & set(first_x)) == 0
    assert abs(np.mean(other_x < 0.5) - np.mean(first_x < 0.5)) < 0.15  # same distribution (two equal peaks)


def test_unusable_saved_sampler_fails_in_one_line_before_training(tmp_path):
    source = toy_source("P1_a", 1)
    path = saved_sampler_path(tmp_path, "P1_a")
    MadNIS(TwoResonances4D(), TrainingConfig(steps=0)).save(path)  # another process: ndim 4
    reuse = replace(settings(tmp_path, 50), reuse=True)
    for content in (None, b"not a checkpoint"):
        if content is not None:
            path.write_bytes(content)
        lines = []
        with pytest.raises(SamplerReuseError) as error:
            run_processes([source], reuse, Banner(), LHEInit(processes=[]), log=lines.append)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and "P1_a" in message
        assert ("ndim=4" if content is None else "not a MadNIS checkpoint") in message
        assert not any("Training" in line for line in lines)
    run_processes(
        [source], replace(reuse, reuse=False, save_models=True), Banner(), LHEInit(processes=[]), log=lambda line: None
    )
    assert MadNIS.load(path, source.integrand).integrand.n_calls > 0  # re-use off: trains and overwrites the file


def test_every_call_is_counted_and_diagnostics_make_none(tmp_path):
    """Prior-channel shares and the observable of the events come from the points drawn; every integrand call
    (training, weighted points, event records) is counted in the results and in the printed line."""
    calls, lines = [], []

    def counted_records(r, channel, generator):
        calls.append(len(r))
        return toy_records(r, channel, generator)

    source = replace(toy_source("P1_a", 1, counted_records), observable=lambda momenta: momenta[:, 0, 0].numpy())
    source.integrand.evaluate = _with_momenta(source.integrand.evaluate, calls)
    config = settings(tmp_path, 200)
    run = run_processes([source], config, Banner(), LHEInit(processes=[]), log=lines.append)
    result = run.sources[0]
    assert sum(calls) == run.n_calls == result.n_calls == result.training_calls + result.weighted_points + 200
    vegas_calls = config.training.vegas_iterations * 256 * 2  # VEGAS pre-training: iterations x batch x 2 groups
    kept = 3 * 256  # the latest 3 of the 15 online batches are integration points, counted there
    assert result.training_calls == 15 * 256 - kept + vegas_calls and result.event_record_calls == 200
    assert f"MadNIS: {sum(calls)} matrix-element calls in all" in "\n".join(lines)
    tail = math.sqrt(sum(c.tail**2 for c in result.result.channels))  # the weight-tail part, printed apart
    assert run.tail_error == pytest.approx(tail) and 0 < tail < run.error
    line = next(line for line in lines if "holds a weight-tail part" in line)
    assert f"{run.error:.3g} pb" in line and f"{tail:.3g} pb" in line
    assert f"alone, as MadEvent quotes it: {math.sqrt(run.error**2 - tail**2):.3g} pb" in line
    assert (
        len(result.events.event_observable) == 200 and len(result.events.sample_observable) == 4000
    )  # final sampler's
    prior = result.events.prior_fractions
    assert prior.sum() == pytest.approx(1.0) and (prior > 0.2).all()


def test_points_inside_the_cuts_are_counted_as_stock_madevent_counts_its_points(tmp_path):
    """A toy whose points with r < 0.3 fail a 'cut' (value 0): the run counts, apart from all its points, those
    inside the cuts (where a matrix element is evaluated: stock MadEvent's results.dat counts only these) and the
    event records, and gives its efficiency per weighted point inside the cuts as well."""
    calls, inside, lines = [], [], []
    source = toy_source("P1_a", 1)
    evaluate = source.integrand.evaluate

    def with_cut(r, channel):
        result = evaluate(r, channel)
        result.value = torch.where(r[:, 0] < 0.3, torch.zeros_like(result.value), result.value)
        calls.append(len(r))
        inside.append(int((result.value != 0).sum()))
        return result

    source.integrand.evaluate = with_cut
    run = run_processes([source], settings(tmp_path, 200), Banner(), LHEInit(processes=[]), log=lines.append)
    result = run.sources[0]
    assert run.n_inside == result.n_inside == sum(inside) + result.event_record_calls
    assert run.n_calls - run.n_inside == sum(calls) - sum(inside) > 0  # records: inside the cuts
    assert 0 < result.events.weighted_inside < result.weighted_points
    share = result.events.weighted_inside / result.weighted_points
    assert run.efficiency_inside == pytest.approx(run.efficiency / share) and run.efficiency_inside > run.efficiency
    assert f"MadNIS: {run.n_inside} of them inside the cuts" in "\n".join(lines)
    assert f"{100 * run.efficiency_inside:.2f}% per weighted point inside the cuts" in "\n".join(lines)
    assert f"; {result.n_inside} of them inside the cuts" in "\n".join(lines)


def _with_momenta(evaluate, calls: list[int]):
    """The toy's evaluation, counted in ``calls``, with its point x as the 'momenta' (n, 1, 1) an observable reads."""

    def with_momenta(r, channel):
        calls.append(len(r))
        result = evaluate(r, channel)
        result.momenta = result.features[:, None, :1]
        return result

    return with_momenta


def test_auto_steps_project_each_source_share_stop_and_say_why(tmp_path):
    lines: list[str] = []
    training = TrainingConfig(
        steps="auto", batch_size=256, seed=2, auto_min_steps=20, auto_window=4, auto_patience=3, max_minutes=1.0
    )
    run_settings = replace(settings(tmp_path, 600), training=training)
    result = run_processes(
        [toy_source("P1_a", 1), toy_source("P2_b", 2)], run_settings, Banner(), LHEInit(processes=[]), lines.append
    )
    for name in ("P1_a", "P2_b"):
        stop = [line for line in lines if line.startswith(f"  [{name}] training stopped: ")]
        assert len(stop) == 1 and "stopped falling at step" in stop[0]
        assert any(line.startswith(f"  [{name}] step") and "/auto" in line and "events in" in line for line in lines)
    first, second = (s.trained for s in result.sources)
    assert first.stop_reason.startswith("projected time to 300 events")  # nevents / 2: nothing else is known
    best = int(second.stop_reason.split("stopped falling at step ")[1].split(":")[0]) - 1
    integral = second.running_integrals[best]  # the estimate the rule was given at its best step
    share = 600 * integral / (first.running_integral + integral)  # its share of the running sigmas known
    assert second.stop_reason.startswith(f"projected time to {share:.0f} events")
    assert abs(result.cross_section - 2 * CamelBack1D().exact) < 5 * result.error


def test_precision_points_meet_the_target_with_the_fewest_points():
    spread, points, target = [10.0, 30.0, 5.0], [100, 1000, 5000], 0.5
    errors = [s / math.sqrt(n) for s, n in zip(spread, points)]
    extra = precision_points(errors, points, target)

    def error(counts):
        return math.sqrt(sum(s * s / n for s, n in zip(spread, counts)))

    final = [n + x for n, x in zip(points, extra)]
    assert error(final) <= target < error(points)
    assert extra[2] == 0  # beyond its optimal share already: draws nothing more
    assert final[1] / final[0] == pytest.approx(3, rel=1e-3)  # the others in proportion to their spread
    assert error(final) == pytest.approx(target, rel=1e-3)  # and no more than the target asks
    moved = [final[0] + 300, final[1] - 300, final[2]]  # shifting points between them misses the target
    assert error(moved) > target
    assert precision_points(errors, points, 10.0) == [0, 0, 0]  # met: nothing
    assert precision_points(errors, points, 0.0) == [0, 0, 0]  # no target
    assert precision_points([1.0, 0.0], [100, 100], 0.5) == [300, 0]  # no spread: no points
    # new points that spread half as much: fewer of them, and pooled by size with the old they reach the target
    better = precision_points(errors, points, target, [s / 2 for s in spread])
    assert better[2] == 0 and all(b < x for b, x in zip(better[:2], extra[:2]))
    for n, e, s, x, final_n in zip(points[:2], errors, spread, better, final):
        pooled = (n * n * e * e + x * (s / 2) ** 2) / (n + x) ** 2
        assert pooled == pytest.approx(s * s / final_n, rel=1e-2)  # the source's share of the target variance


@pytest.mark.parametrize("precision", [0.0, 0.003])
def test_a_run_draws_points_for_sigma_until_its_precision_is_reached(tmp_path, precision):
    lines = []
    run = replace(settings(tmp_path, 200), precision=precision)
    result = run_processes([toy_source("P1_a", 1)], run, Banner(), LHEInit(processes=[]), lines.append)
    source = result.sources[0]
    drawn_for_sigma = [line for line in lines if "[P1_a]" in line and "more weighted points for sigma" in line]
    relative = result.error / result.cross_section
    if precision == 0:
        assert not drawn_for_sigma and relative > 0.003  # the events' points alone: the target below is not met
    else:
        extra = int(drawn_for_sigma[0].split("] ")[1].split()[0])
        assert extra > 0 and source.weighted_points > extra
        assert relative < 1.2 * precision  # the estimate of the spread per point holds within its noise
        assert abs(result.cross_section - CamelBack1D().exact) < 5 * result.error
    assert source.n_events == 200 == result.nevents
