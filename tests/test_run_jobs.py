"""Jobs of a parallel run without MG5aMC: spec files, chunking, seeds, core shares, pooled sigma, merging."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from madnis_plugin.lhe import EventRecords
from madnis_plugin.run import job as job_module
from madnis_plugin.run.events import integration_points, share_events
from madnis_plugin.run.job import claim_idle_cores
from madnis_plugin.run.jobs import (
    CHUNK_EVENTS,
    FINISHED,
    INTEGRAL,
    LOG,
    Accumulated,
    Chunk,
    JobSpec,
    ahead_open,
    chunk_count,
    chunk_seed,
    core_share,
    generation_jobs,
    integration_from_dict,
    integration_points_here,
    merge_chunks,
    projected_share,
    read_result,
    settings_from_dict,
    settings_to_dict,
    share_bound,
    workers_now,
    write_events_file,
    write_json,
    write_result,
)
from madnis_plugin.run.parallel import job_specs
from madnis_plugin.run.sample import Unweighted
from madnis_plugin.run.source import RunSettings

from madnis import TrainingConfig
from madnis.integration import ChannelAccumulator, SamplerPools


def test_a_training_job_projects_to_its_share_by_the_other_p_dirs_integrals_as_they_come_in(tmp_path):
    """steps = auto in P-dir 2 of ttj (14 / 574 pb): an equal share until the others' integral.json exist, then its
    share by their running estimates (at full weight) and integrations, read anew on every call."""
    dirs = [tmp_path / f"P{i}" for i in range(2)]
    for d in dirs:
        d.mkdir()
    share = projected_share(10000, [str(d) for d in dirs])
    assert share(21.4) == pytest.approx(10000 / 3)
    write_json(dirs[0] / INTEGRAL, {"integral": 414.7, "estimate": True})
    assert share(21.4) == pytest.approx(10000 * 21.4 / (1.5 * (414.7 + 21.4)))  # P1 counted at the mean of the known
    write_json(dirs[1] / INTEGRAL, {"integral": -140.4})
    assert share(21.4) == pytest.approx(10000 * 21.4 / (414.7 + 140.4 + 21.4))


def test_share_bound_counts_only_the_p_dirs_integrated_before(tmp_path):
    """A training job's candidates are capped by its share with the finished P-dirs alone in the sum: never below
    the share every P-dir's integral gives (share_events), and exact once all are known."""
    integrals = [414.7, 140.4, 21.4]
    dirs = [tmp_path / f"P{i}" for i in range(3)]
    for d in dirs:
        d.mkdir()
    shares = share_events(10000, integrals)
    assert share_bound(10000, integrals[2], [str(d) for d in dirs[:2]]) == 10000  # nobody else finished yet
    write_json(dirs[0] / INTEGRAL, {"integral": 1.3 * integrals[0], "estimate": True})  # 30 % high: still no cap below
    estimated = share_bound(10000, integrals[2], [str(d) for d in dirs[:2]])
    assert estimated == math.ceil(10000 * 21.4 / (21.4 + 0.5 * 1.3 * 414.7)) + 1 and shares[2] < estimated < 10000
    write_json(dirs[0] / INTEGRAL, {"integral": integrals[0]})
    bound = share_bound(10000, integrals[2], [str(d) for d in dirs[:2]])
    assert shares[2] < bound < 10000
    write_json(dirs[1] / INTEGRAL, {"integral": integrals[1]})
    assert shares[2] <= share_bound(10000, integrals[2], [str(d) for d in dirs[:2]]) <= shares[2] + 2
    for i in range(3):
        others = [str(d) for j, d in enumerate(dirs) if j != i]
        write_json(dirs[i] / INTEGRAL, {"integral": integrals[i]})
        assert share_bound(10000, integrals[i], others) >= shares[i]


def test_a_training_job_integrates_its_share_of_the_points_by_the_other_jobs_files(tmp_path):
    """ttj's q q~ P-dir (21.4 pb) after gg (413 pb, a running estimate) and gq (141 pb, not yet written), every job
    configured with 100k points (a channel part of a P-dir split in two: 50k): the points follow the cross sections
    the other jobs wrote so far, read from their spec.json and integral.json."""
    dirs = [tmp_path / name for name in ("gg", "gq")]
    for d, points in zip(dirs, (100_000, 50_000)):
        settings = RunSettings(nevents=10, output_dir=tmp_path, integration_points=points)
        JobSpec("train", str(d), 0, 1, settings_to_dict(settings)).write(d)
    others = [str(d) for d in dirs]
    assert integration_points_here(100_000, 21.4, others) == integration_points([100_000] * 2 + [50_000], [21.4] * 3, 0)
    write_json(dirs[0] / INTEGRAL, {"integral": 413.0, "estimate": True})
    here = integration_points_here(100_000, 21.4, others)
    assert here == integration_points([100_000, 100_000, 50_000], [21.4, 413.0, None], 0) < 10_000
    write_json(dirs[1] / INTEGRAL, {"integral": -141.0})
    assert integration_points_here(100_000, 21.4, others) == integration_points(
        [100_000, 100_000, 50_000], [21.4, 413.0, 141.0], 0
    )


def test_spec_and_settings_travel_as_json(tmp_path):
    settings = RunSettings(nevents=10, output_dir=tmp_path / "out", training=TrainingConfig(steps=7, seed=3))
    spec = JobSpec("generate", "/x/P1_qq_ll", 2, 11, settings_to_dict(settings), workers=2, chunks=[4, 5])
    spec.write(tmp_path / "job")
    back = JobSpec.read(tmp_path / "job")
    assert back == spec and back.name == "P1_qq_ll"
    assert settings_from_dict(back.settings) == settings


def test_result_file_marks_a_finished_job(tmp_path):
    assert read_result(tmp_path) is None
    write_result(tmp_path, {"sigma": 1.5})
    assert read_result(tmp_path) == {"sigma": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary left


@pytest.mark.parametrize("n", [0, 1, CHUNK_EVENTS - 1, CHUNK_EVENTS, CHUNK_EVENTS + 1, 10_000, 100_001])
def test_a_rest_takes_full_chunks_and_a_last_one_cut(n):
    k = chunk_count(n)
    assert (k - 1) * CHUNK_EVENTS < n <= k * CHUNK_EVENTS or n == k == 0


def test_generation_jobs_make_every_missing_chunk_once_costliest_first():
    # g g > w+ d u~ g in two parts, measured: one at 0.45 % (222 points per event), one at 1.6 %
    missing = [(0, [1, 2], 222.0), (1, [1, 2, 3], 62.0), (2, [4, 5, 6, 7, 8, 9], 10.0)]
    jobs = generation_jobs(missing, cores=2)
    made = sorted((i, c) for i, chunks in jobs for c in chunks)
    assert made == sorted((i, c) for i, chunks, _ in missing for c in chunks)
    cost = {i: per for i, _, per in missing}
    costs = [cost[i] * len(chunks) for i, chunks in jobs]
    assert costs == sorted(costs, reverse=True)
    assert jobs[:2] == [(0, [1]), (0, [2])]  # a costly source's chunks run on both cores, not one after the other
    assert all(chunks == list(range(chunks[0], chunks[-1] + 1)) for _, chunks in jobs)  # consecutive
    assert len(generation_jobs([(0, list(range(1, 99)), 50.0)], cores=2)) == 4  # 98 chunks: a few jobs, not 98


def test_chunks_are_made_ahead_only_while_another_job_trains_and_none_waits(tmp_path):
    others = [tmp_path / "a", tmp_path / "b"]
    for d in others:
        d.mkdir()
    assert not ahead_open([str(d) for d in others])  # b has not started: a queued job needs the core
    for d in others:
        (d / LOG).write_text("")
    assert ahead_open([str(d) for d in others])
    write_result(others[0], {})
    assert ahead_open([str(d) for d in others])
    write_result(others[1], {})
    assert not ahead_open([str(d) for d in others])  # every training is done: the parent goes on


def test_a_training_job_takes_the_cores_the_others_left_once_none_waits(tmp_path):
    others = [tmp_path / name for name in "abc"]
    for d in others:
        d.mkdir()
    spec = JobSpec("train", "/x/P1", 0, 1, {}, workers=1, shared_cores=4, others=list(map(str, others)))
    assert workers_now(spec) == 1  # c has not started: the cores that free go to it
    for d in others:
        (d / LOG).write_text("")
    assert workers_now(spec) == 1  # four jobs on four cores
    (others[0] / FINISHED).touch()
    assert workers_now(spec) == 1  # three running: one core each, one idle (never more workers than cores)
    (others[1] / FINISHED).touch()
    assert workers_now(spec) == 2
    (others[2] / FINISHED).touch()
    assert workers_now(spec) == 4  # alone
    assert workers_now(replace(spec, shared_cores=0)) == 1  # fixed madnis_workers, or a cluster: never grows
    assert workers_now(replace(spec, workers=2, shared_cores=2)) == 2


def test_the_jobs_of_a_phase_know_each_other_and_grow_only_with_automatic_workers(tmp_path):
    dirs = [tmp_path / f"generate_{i:03d}" for i in (1, 3, 5)]
    specs = [JobSpec("generate", "/x/P1", 0, 1, {}, chunks=[i]) for i in (1, 3, 5)]
    assert job_specs(list(zip(dirs, specs)), 2, None) == dirs
    for job_dir in dirs:
        spec = JobSpec.read(job_dir)
        assert spec.others == [str(d) for d in dirs if d != job_dir]
        assert (spec.workers, spec.shared_cores) == (1, 2)
    job_specs(list(zip(dirs, specs)), 2, 1)  # madnis_workers fixed: never more
    assert JobSpec.read(dirs[0]).shared_cores == 0


def test_a_training_job_grows_its_bridge_workers_before_a_batch_at_most_once_a_second(tmp_path, monkeypatch):
    class Library:
        workers = 1

        def grow(self, workers: int) -> None:
            self.workers = workers

    clock = [100.0]
    monkeypatch.setattr(job_module.time, "monotonic", lambda: clock[0])
    other = tmp_path / "other"
    other.mkdir()
    (other / LOG).write_text("")
    spec = JobSpec("train", "/x/P1", 0, 1, {}, workers=1, shared_cores=2, others=[str(other)], label="P1")
    library, lines = Library(), []
    claim = claim_idle_cores(spec, library, lines.append)
    claim()
    assert library.workers == 1 and not lines
    (other / FINISHED).touch()
    clock[0] += 0.5
    claim()
    assert library.workers == 1  # looked again only a second after the last look
    clock[0] += 0.5
    claim()
    assert library.workers == 2 and lines == ["  [P1] 2 bridge workers from now on: the other jobs left their cores"]
    claim()
    assert len(lines) == 1


def test_a_job_whose_new_worker_cannot_start_goes_on_with_the_workers_it_has(tmp_path):
    class Library:
        workers, tries = 1, 0

        def grow(self, workers: int) -> None:
            self.tries += 1
            raise OSError("Resource temporarily unavailable")

    other = tmp_path / "other"
    other.mkdir()
    (other / LOG).write_text("")
    (other / FINISHED).touch()
    spec = JobSpec("train", "/x/P1", 0, 1, {}, workers=1, shared_cores=2, others=[str(other)], label="P1")
    library, lines = Library(), []
    claim = claim_idle_cores(spec, library, lines.append)
    claim()
    claim()
    assert library.workers == 1 and library.tries == 1
    assert lines == ["  [P1] no more bridge workers (Resource temporarily unavailable): going on with 1"]


def test_chunk_seeds_differ_by_source_and_chunk_and_repeat():
    seeds = {chunk_seed(21, i, c) for i in range(3) for c in range(50)}
    assert len(seeds) == 150
    assert chunk_seed(21, 1, 7) == chunk_seed(21, 1, 7) != chunk_seed(22, 1, 7)


@pytest.mark.parametrize(
    ("cores", "jobs", "expected"),
    [(2, 1, (2, 1)), (2, 2, (1, 1)), (2, 8, (1, 1)), (1, 1, (1, 1)), (8, 2, (4, 1)), (4, 3, (1, 1))],
)
def test_core_share_never_runs_more_busy_processes_than_cores(cores, jobs, expected):
    workers, threads = core_share(cores, jobs)
    assert (workers, threads) == expected
    assert min(jobs, cores) * workers <= cores


def accumulate(channel: torch.Tensor, weight: torch.Tensor) -> ChannelAccumulator:
    acc = ChannelAccumulator(3)
    acc.add(channel, weight, torch.ones(len(weight), dtype=torch.bool))
    return acc


def as_accumulated(acc: ChannelAccumulator, inside: int = 0) -> Accumulated:
    """One stage (``inside`` of its points inside the cuts) as a job writes it and the merge reads it back (through its
    arrays)."""
    pools = SamplerPools(3)
    pools.add(acc, final=True)
    return Accumulated.from_arrays(Accumulated(pools, np.ones(3), 3.0, inside).arrays())


def test_one_stage_through_a_file_is_its_accumulator_and_stages_merge_in_any_order():
    generator = torch.Generator().manual_seed(1)
    channel = torch.randint(0, 3, (3000,), generator=generator)
    weight = torch.rand(3000, generator=generator, dtype=torch.float64) * (1 + channel)
    whole = accumulate(channel, weight).result(torch.tensor([0, 0, 1]))
    alone = as_accumulated(accumulate(channel, weight)).result([0, 0, 1])
    assert alone.integral == pytest.approx(whole.integral, rel=1e-12)
    assert alone.error == pytest.approx(whole.error, rel=1e-10)
    assert alone.tail_error == pytest.approx(whole.tail_error, rel=1e-10)
    parts = [
        as_accumulated(accumulate(channel[s], weight[s])) for s in (slice(0, 500), slice(500, 2000), slice(2000, None))
    ]
    left, right = parts[0].merge(parts[1]).merge(parts[2]), parts[0].merge(parts[1].merge(parts[2]))
    assert left.result([0, 0, 1]).integral == pytest.approx(right.result([0, 0, 1]).integral, rel=1e-14)
    pooled = left.result([0, 0, 1])
    assert pooled.integral == pytest.approx(whole.integral, rel=0.05) and pooled.n_points == 3000
    assert left.prior_total == 9.0 and asdict(integration_from_dict(asdict(pooled))) == asdict(pooled)


def test_stages_pool_by_their_sizes_not_by_the_points_they_gave_a_channel():
    """Stage 1 (100 points) met a high channel 0 (10 points of 3.0); stage 2 (300 points) then put most of its points
    into channel 0 (270 of 1.0): by size I_0 = (100 x 3 + 300 x 1) / 400 = 1.5, where per channel the 10 high points
    would count 10 / 280 (1.07). Each stage's variance enters with its size squared; a channel no stage drew is 0."""
    stage1 = accumulate(torch.tensor([0] * 10 + [1] * 90), torch.tensor([3.0] * 10 + [1.0] * 90, dtype=torch.float64))
    stage2 = accumulate(torch.tensor([0] * 270 + [1] * 30), torch.tensor([1.0] * 300, dtype=torch.float64))
    pooled = as_accumulated(stage1).merge(as_accumulated(stage2)).result([0, 1, 2])
    assert [c.integral for c in pooled.channels] == pytest.approx([1.5, 1.0, 0.0], rel=1e-12)
    assert [c.n_points for c in pooled.channels] == [280, 120, 0] and pooled.integral == pytest.approx(2.5)
    noisy1 = accumulate(torch.tensor([0, 0, 0, 1, 1]), torch.tensor([1.0, 2, 3, 4, 6], dtype=torch.float64))
    noisy2 = accumulate(torch.tensor([0, 0, 1, 1, 1, 1, 1]), torch.tensor([1.0, 3, 2, 2, 4, 4, 8], dtype=torch.float64))
    merged = as_accumulated(noisy1).merge(as_accumulated(noisy2)).result([0, 1, 2])
    var = [np.var(v, ddof=1) / len(v) for v in ([1, 2, 3], [4, 6], [1, 3], [2, 2, 4, 4, 8])]
    expected = [
        (25 * var[0] + 49 * var[2]) / 144 + merged.channels[0].tail ** 2,
        (25 * var[1] + 49 * var[3]) / 144 + merged.channels[1].tail ** 2,
    ]
    assert [c.error**2 for c in merged.channels[:2]] == pytest.approx(expected, rel=1e-12)
    assert [c.integral for c in merged.channels[:2]] == pytest.approx([2.0, (5 * 5 + 7 * 4) / 12], rel=1e-12)


def chunk_file(tmp_path: Path, name: str, n: int, offset: float) -> Path:
    """A chunk job's output with ``n`` events whose momenta encode ``offset`` + event index."""
    job_dir = tmp_path / name
    job_dir.mkdir()
    records = EventRecords.empty(n, 4)
    records.momenta[:, 0, 3] = offset + np.arange(n)
    relative = np.ones(n)
    relative[0] = 1.5  # one overweight event kept with weight w/w_max
    events = Unweighted(
        r=torch.rand(n, 4, dtype=torch.float64),
        channel=torch.zeros(n, dtype=torch.long),
        relative_weight=relative,
        cross_section=None,  # type: ignore[arg-type]
        weighted_points=10 * n,
        weighted_inside=6 * n,
        w_max=1.0,
        efficiency=0.1,
        overweight_share=0.001,
        n_overweight=0,
        max_event_weight_ratio=1.0,
        prior_fractions=np.ones(3) / 3,
        sample_weights=np.ones(1),
        sample_observable=None,
        event_observable=None,
        priority=np.linspace(0, 1, n),
    )
    acc = as_accumulated(
        accumulate(torch.zeros(10 * n, dtype=torch.long), torch.full((10 * n,), 2.0, dtype=torch.float64)), 6 * n
    )
    write_events_file(job_dir, events, records, acc)
    write_result(
        job_dir,
        {
            "weighted_points": 10 * n,
            "w_max": 1.0 + offset,
            "efficiency": 0.1,
            "overweight_share": 0.001,
        },
    )
    return job_dir


def test_merge_takes_chunks_in_chunk_order_and_pools_every_weighted_point(tmp_path):
    dirs = [chunk_file(tmp_path, f"chunk_{c:03d}", n, 1000 * c) for c, n in enumerate([3, 2, 4])]
    integration_points = as_accumulated(
        accumulate(torch.tensor([0, 1, 2, 2]), torch.tensor([2.0, 0, 0, 0], dtype=torch.float64)), 1
    )
    integration = integration_points.result([0, 1, 2])
    chunks = [Chunk.read(d) for d in dirs]
    events, records = merge_chunks(integration, integration_points, np.ones(4), chunks)
    assert list(records.momenta[:, 0, 3]) == [0, 1, 2, 1000, 1001, 2000, 2001, 2002, 2003]
    assert events.weighted_points == 4 + 90 and events.n_overweight == 3 and events.w_max == 2001.0
    assert events.weighted_inside == 1 + 6 * 9  # the points inside the cuts: the integration's and every chunk's
    assert events.cross_section.channels[0].n_points == 1 + 90
    assert events.cross_section.channels[0].integral == pytest.approx(2.0)
    assert len(events.r) == len(events.relative_weight) == 9


def test_a_share_of_a_chunk_is_its_events_of_lowest_priority_in_priority_order(tmp_path):
    chunk = Chunk.read(chunk_file(tmp_path, "train", 5, 0))
    chunk.priority = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
    taken = chunk.first(3)
    assert list(taken.records.momenta[:, 0, 3]) == [1, 3, 2] and list(taken.priority) == [0.1, 0.3, 0.5]
    assert torch.equal(taken.r, chunk.r[[1, 3, 2]]) and len(chunk.first(0)) == 0 and chunk.first(0).records is None
    assert taken.accumulated is chunk.accumulated  # a share still pools every weighted point of the job


def test_a_chunk_that_did_not_finish_is_not_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not finish"):
        Chunk.read(tmp_path)
