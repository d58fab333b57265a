"""Jobs of a parallel run: what one job is asked (a JSON spec) and what it leaves (files), chunking, merging.

Why: with MG5aMC's ``run_mode`` 1 (cluster) or 2 (multicore) every P-dir trains in a job of its own and its
events come from independent seeded chunks, each a job; jobs share nothing but files in their own directory
(``spec.json`` in; ``result.json``, the sampler checkpoint or ``events.npz`` out), so any cluster MG5aMC
submits to can run them. ``result.json`` is written last (atomically): a job without it failed.

Every training job unweights its integration points (seeded as chunk 0) for candidate events, with their LHE
records: when a P-dir's share, known only once every P-dir is integrated, is at most its candidates, it takes
the share of lowest priority (exactly the events an unweighting for the share would accept) and needs no
generation job. The candidates are capped by :func:`share_bound` from the integrals (or training estimates) the
other training jobs wrote so far (``integral.json``), since each record costs a matrix-element call; they are stored
in priority order and their records drawn in that order, so a record does not depend on the cap. Any rest comes
from chunks 1, 2, ... of :data:`CHUNK_EVENTS` events each, chunk c of P-dir i drawn with :func:`chunk_seed` (run
seed, i, c), the last one cut by priority: a chunk is the same whichever job makes it and whenever, so a training
job that finishes while others still train makes its first chunks ahead on its otherwise idle core
(:func:`ahead_open`), and generation jobs make only the missing ones, several per job (:func:`generation_jobs`).
Merging takes the candidates, then the chunks in chunk order, so the same seed gives the same events whatever
ran where and in which order.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from madnis import ChannelContribution, IntegrationResult, TrainingConfig
from madnis.integration import SamplerPools

from ..lhe import EventRecords
from .events import integration_points, training_share
from .sample import Unweighted
from .source import RunSettings

# events of every generation chunk (a job makes several: its start-up is paid once). Why not more: chunks are what
# the generation jobs share out, and the last job to finish decides the wall time. With a source missing 2000-7000
# events at W+2j's ~3.3 s per 1000 and 2 cores, generation_jobs' packing ends on average 2.5 s after an even split
# with chunks of 1000 events, 1.4 s with 500 (2000 draws, the packing run as MG5aMC's pool starts jobs); the last
# chunk of a share, cut by priority, also wastes half as many event records.
CHUNK_EVENTS = 500
# A single P-dir's training job also generates its events when they need at most this many times its integration
# points (measured: a job costs ~2 s of start-up, bridge and sampler, before any work; ~1.6 s more of python and
# torch where no job server forks it, see job_server.py).
EVENTS_IN_TRAINING = 2.0
GENERATION = 4  # random stream of the generation chunks (beside source.INTEGRATION, SAMPLING)
# weighted points of one precision chunk at most: about a W+2j event chunk's (500 events at ~2 %), so that the
# generation jobs share them out as they share the event chunks
PRECISION_CHUNK_POINTS = 25_000
SPEC, RESULT, LOG, SAMPLER, POINTS, EVENTS, INTEGRAL, FINISHED = (
    "spec.json",
    "result.json",
    "job.log",
    "sampler.pt",
    "points.npz",
    "events.npz",
    "integral.json",
    "finished",  # touched by the job's script when the job's process ended, whatever its outcome: its core is free
)


@dataclass(frozen=True)
class JobSource:
    """What one training job trains: a P-dir, or part ``part`` (0-based) of ``parts``, the channels ``channels``."""

    pdir: Path
    channels: list[int] | None = None
    part: int = 0
    parts: int = 1

    @property
    def name(self) -> str:
        return f"{self.pdir.name}.{self.part + 1}of{self.parts}" if self.parts > 1 else self.pdir.name

    def settings(self, settings: RunSettings) -> RunSettings:
        """The run's settings for this source: a part's final integration draws its share of the P-dir's points.
        Its efficiency check keeps the whole cap (``auto_check_points``): measured on ``g g > w+ d u~ g`` in two
        parts, checks of at most 50k points each stopped training at steps 400-433 on 2.0-2.5 % and the events came
        at 0.62 % (2.0M calls, 119 s), with 100k at steps 844-897 on 1.7-1.9 % and 1.39 % (1.5M calls, 114 s)."""
        if self.parts == 1:
            return settings
        return replace(settings, integration_points=math.ceil(settings.integration_points / self.parts))


@dataclass
class JobSpec:
    """One job: train P-dir ``pdir`` (index ``index`` in the run) or generate its chunk ``chunk`` of events."""

    kind: str  # "train" or "generate"
    pdir: str
    index: int
    seed: int  # the run's seed
    settings: dict[str, Any]  # settings_to_dict of the run's RunSettings
    workers: int = 1  # bridge workers of this job at its start
    shared_cores: int = 0  # the cores the run's jobs share on this machine (0: keep ``workers``), workers_now
    threads: int = 1  # torch intra-op threads of this job
    chunks: list[int] = field(default_factory=list)  # generate: the chunks this job makes (CHUNK_EVENTS events each)
    precision_chunks: list[int] = field(default_factory=list)  # generate: the precision chunks this job makes
    precision_points: int = 0  # weighted points of each precision chunk
    precision_share: list[float] = field(default_factory=list)  # their channel allocation (EventPlan.for_precision)
    n_events: int = 0  # train: the events steps = auto projects to with one source (several: projected_share)
    max_events: int = 0  # train: the run's events (at most this P-dir's share; share_bound caps the candidates)
    # the other jobs of this job's phase (directories): train, the other sources' training jobs (their integrals
    # bound this source's share); generate, the other generation jobs (workers_now)
    others: list[str] = field(default_factory=list)
    sampler: str = ""  # generate: the trained checkpoint
    integration: dict[str, Any] | None = None  # generate: the train job's integration (channel probabilities)
    events_here: bool = False  # train: n_events is the P-dir's share; draw more points for them if cheap
    channels: list[int] | None = None  # the part of the P-dir's channels this job's source is (None: all)
    label: str = ""  # the source's name when it is a part (JobSource.name)

    @property
    def name(self) -> str:
        return self.label or Path(self.pdir).name

    def write(self, job_dir: Path) -> None:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / SPEC).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, job_dir: Path) -> JobSpec:
        return cls(**json.loads((job_dir / SPEC).read_text()))


def settings_to_dict(settings: RunSettings) -> dict[str, Any]:
    """A RunSettings as JSON values (paths as strings, training as TrainingConfig.to_dict)."""
    values = {f.name: getattr(settings, f.name) for f in fields(settings)}
    values["output_dir"] = str(settings.output_dir)
    values["training"] = settings.training.to_dict()
    return values


def settings_from_dict(values: dict[str, Any]) -> RunSettings:
    return RunSettings(
        **{
            **values,
            "output_dir": Path(values["output_dir"]),
            "training": TrainingConfig.from_dict(values["training"]),
        }
    )


def integration_from_dict(values: dict[str, Any]) -> IntegrationResult:
    channels = [ChannelContribution(**c) for c in values["channels"]]
    return IntegrationResult(**{**values, "channels": channels})


def chunk_count(n_events: int) -> int:
    """Chunks that ``n_events`` events take: every chunk has :data:`CHUNK_EVENTS`, the last is cut by priority."""
    return math.ceil(max(n_events, 0) / CHUNK_EVENTS)


def chunk_dir(source_dir: Path, chunk: int) -> Path:
    """Where chunk ``chunk`` of a source (``root/<source>``) leaves its events and result, whoever made it."""
    return source_dir / f"chunk_{chunk:03d}"


def generation_jobs(missing: list[tuple[int, list[int], float]], cores: int) -> list[tuple[int, list[int]]]:
    """Generation jobs ``(source, chunks)`` for the ``missing`` chunks ``(source, chunks, cost of one chunk)``,
    costliest first (the multicore pool starts jobs in order). A job makes consecutive chunks of one source, each
    job about half a core's share of the cost (nearly balanced cores: a job costs ~2-3.5 s of start-up, so
    not one per chunk), the cost of a chunk being the weighted points it draws or any measure in proportion (an
    event chunk's: its source's weighted points per event, 1 / efficiency; a precision chunk's: its points)."""
    total = sum(len(chunks) * cost for _, chunks, cost in missing)
    target = total / (2 * max(cores, 1))
    jobs = []
    for source, chunks, cost in missing:
        n_jobs = min(len(chunks), max(1, round(len(chunks) * cost / target))) if target > 0 else 1
        bounds = [len(chunks) * k // n_jobs for k in range(n_jobs + 1)]  # as equal as possible
        jobs += [(source, chunks[a:b], cost * (b - a)) for a, b in zip(bounds, bounds[1:])]
    jobs.sort(key=lambda job: -job[2])
    return [(source, chunks) for source, chunks, _ in jobs]


def chunk_seed(seed: int, index: int, chunk: int, stream: int = GENERATION) -> int:
    """Seed of chunk ``chunk`` of source ``index`` in a run seeded ``seed`` (``stream``: event or precision chunks)."""
    return int(np.random.SeedSequence([seed % 2**63, index, stream, chunk]).generate_state(1, np.uint64)[0] % 2**62)


def precision_dir(source_dir: Path, chunk: int) -> Path:
    """Where precision chunk ``chunk`` of a source leaves its weighted points and result."""
    return source_dir / f"precision_{chunk:03d}"


def precision_chunks(extra: int) -> tuple[int, int]:
    """(chunks, points of each) for ``extra`` weighted points: chunks of at most :data:`PRECISION_CHUNK_POINTS`."""
    chunks = math.ceil(max(extra, 0) / PRECISION_CHUNK_POINTS)
    return chunks, math.ceil(extra / chunks) if chunks else 0


def core_share(cores: int, jobs: int) -> tuple[int, int]:
    """(bridge workers, torch threads) of each of ``jobs`` concurrent jobs on ``cores`` cores.

    A job's flow (torch) and its bridge workers take turns on a batch, so the job's cores go to its workers;
    torch gets one thread as soon as several jobs or workers run (more only spin), all cores when alone.
    """
    workers = max(1, cores // max(1, min(jobs, cores)))
    return workers, (cores if jobs <= 1 and workers == 1 else 1)


def write_json(path: Path, values: dict[str, Any]) -> None:
    """``path`` appears complete or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(values))
    os.replace(tmp, path)


def write_result(job_dir: Path, values: dict[str, Any]) -> None:
    """The job's last act: result.json, atomically (its presence means the job succeeded)."""
    write_json(job_dir / RESULT, values)


ESTIMATE_WEIGHT = 0.5  # share_bound counts a P-dir still integrating at this share of its training estimate


def written_integral(job_dir: Path) -> tuple[float, bool] | None:
    """A training job's ``integral.json``: (|integral|, whether it is a training's running estimate rather than an
    integration's value); None while the job has written none."""
    path = job_dir / INTEGRAL
    if not path.exists():
        return None
    values = json.loads(path.read_text())
    return abs(values["integral"]), bool(values.get("estimate"))


def other_integrals(other_trainings: list[str]) -> list[tuple[float, bool]]:
    """The other P-dirs' :func:`written_integral` written so far."""
    return [found for found in (written_integral(Path(d)) for d in other_trainings) if found is not None]


def share_bound(nevents: int, integral: float, other_trainings: list[str]) -> int:
    """The most events a P-dir with cross section ``integral`` can get of ``nevents``: its share with the other
    P-dirs' :func:`other_integrals` in the sum, an integration's value as it is and a training's running estimate
    (written on its progress lines and before the integration) at :data:`ESTIMATE_WEIGHT` of it (running estimates
    err by a few per cent: half never caps below the share); P-dirs without the file count as zero.
    :func:`.events.share_events` rounds by largest remainder, hence the + 1."""
    total = abs(integral) + sum(
        value * (ESTIMATE_WEIGHT if estimate else 1.0) for value, estimate in other_integrals(other_trainings)
    )
    return nevents if total <= 0 else min(nevents, math.ceil(nevents * abs(integral) / total) + 1)


def projected_share(nevents: int, other_trainings: list[str]) -> Callable[[float], float]:
    """What ``steps = auto`` projects to in a P-dir's training job: its share of ``nevents`` by the running integral,
    with the other P-dirs' :func:`other_integrals` as they are now (read on every call) and the others counted at
    the mean of the known (:func:`.events.training_share`): ``nevents`` / P-dirs until the others' estimates come
    in. Why: a P-dir with a few per cent of sigma trained and checked for an equal share (``p p > t t~ j``: the
    ``q q~`` P-dir, 371 of 10k events, projected to 3334 and checked on 35k points)."""

    def share(integral: float) -> float:
        known = [value for value, _ in other_integrals(other_trainings)]
        return training_share(nevents, len(other_trainings) + 1, known)(integral)

    return share


def integration_points_here(configured: int, integral: float, other_trainings: list[str]) -> int:
    """A training job's final integration points (:func:`.events.integration_points`): the sources' configured
    points (each job's ``spec.json``) re-divided by cross section, the others' as they wrote it so far
    (``integral.json``: an integration's value or a training's running estimate; not yet written: unknown)."""
    configured_points, sigma = [configured], [integral]
    for job_dir in map(Path, other_trainings):
        configured_points.append(int(JobSpec.read(job_dir).settings["integration_points"]))
        found = written_integral(job_dir)
        sigma.append(None if found is None else found[0])
    return integration_points(configured_points, sigma, 0)


def all_started(job_dirs: list[Path]) -> bool:
    """Whether every one of these jobs has started (its log exists): then no job waits for a core that frees
    (MG5aMC's multicore pool starts queued jobs only when one ends)."""
    return all((d / LOG).exists() for d in job_dirs)


def ahead_open(other_trainings: list[str]) -> bool:
    """Whether a finished training job may make chunks ahead: some other training job still trains, and every one
    has started (:func:`all_started`), so no job waits for this core."""
    dirs = [Path(d) for d in other_trainings]
    return all_started(dirs) and any(read_result(d) is None for d in dirs)


def workers_now(spec: JobSpec) -> int:
    """The bridge workers job ``spec`` may use now: its share of the cores at the start (``spec.workers``) or, once
    every other job of its phase (``spec.others``) has started (none waits for a core) and some have ended, its even
    share of ``spec.shared_cores`` among the jobs still running; a job left alone takes every core. Why: MadEvent
    keeps its ``nb_core`` busy; here a P-dir or channel part that trains longest (W+2j's larger part, ``p p > t t~
    j``'s ``g g``) drew its final points on one core while the others stood idle for up to 9 s of a 57 s launch, and
    the last generation job of a packing runs alone."""
    dirs = [Path(d) for d in spec.others]
    if spec.shared_cores <= spec.workers or not all_started(dirs):
        return spec.workers
    running = 1 + sum(not (d / FINISHED).exists() for d in dirs)
    return max(spec.workers, spec.shared_cores // running)


def read_result(job_dir: Path) -> dict[str, Any] | None:
    """The job's result.json, None if the job did not finish."""
    path = job_dir / RESULT
    return json.loads(path.read_text()) if path.exists() else None


@dataclass
class Accumulated:
    """A job's weighted points as mergeable state: their stages' sums (:class:`madnis.integration.SamplerPools`: a
    job's stages pool with another's by their sizes) and the prior-channel sums of the diagnostics."""

    cross_section: SamplerPools
    prior_weighted: np.ndarray  # sum w alpha^prior per channel
    prior_total: float = 0.0
    n_inside: int = 0  # the points inside the cuts (weight != 0)

    @classmethod
    def of(cls, points: Any) -> Accumulated:
        """From a :class:`~.sample.WeightedPoints`."""
        return cls(points.cross_section, points.prior_weighted.numpy(), points.prior_total, points.n_inside)

    @classmethod
    def empty(cls, n_channels: int) -> Accumulated:
        return cls(SamplerPools(n_channels), np.zeros(n_channels))

    @property
    def n_points(self) -> int:
        return self.cross_section.n_points

    def arrays(self, prefix: str = "acc_") -> dict[str, np.ndarray]:
        state = {k: v.numpy() for k, v in self.cross_section.arrays(prefix).items()}
        return state | {
            f"{prefix}prior_weighted": self.prior_weighted,
            f"{prefix}prior_total": np.array(self.prior_total),
            f"{prefix}n_inside": np.array(self.n_inside),
        }

    @classmethod
    def from_arrays(cls, data: Any, prefix: str = "acc_") -> Accumulated:
        return cls(
            SamplerPools.from_arrays(data, prefix),
            np.asarray(data[f"{prefix}prior_weighted"]),
            float(data[f"{prefix}prior_total"]),
            int(data[f"{prefix}n_inside"]),
        )

    def merge(self, other: Accumulated) -> Accumulated:
        """Both sets of points as one."""
        return Accumulated(
            self.cross_section.merge(other.cross_section),
            self.prior_weighted + other.prior_weighted,
            self.prior_total + other.prior_total,
            self.n_inside + other.n_inside,
        )

    def result(self, group_of_channel: list[int]) -> IntegrationResult:
        """The pooled cross section."""
        return self.cross_section.result(torch.tensor(group_of_channel))

    def final_result(self, group_of_channel: list[int]) -> IntegrationResult:
        """The cross section of the final sampler's points alone."""
        return self.cross_section.final.result(torch.tensor(group_of_channel))

    def prior_fractions(self) -> np.ndarray:
        n = len(self.prior_weighted)
        return self.prior_weighted / self.prior_total if self.prior_total > 0 else np.full(n, 1.0 / n)


RECORD_FIELDS = [f.name for f in fields(EventRecords)]


def chunk_result(events: Unweighted) -> dict[str, Any]:
    """What a job that generated events reports of them (read back by :class:`Chunk`)."""
    return {
        "weighted_points": events.weighted_points,
        "weighted_inside": events.weighted_inside,
        "w_max": events.w_max,
        "efficiency": events.efficiency,
        "overweight_share": events.overweight_share,
    }


def write_events_file(job_dir: Path, events: Unweighted, records: EventRecords | None, acc: Accumulated) -> None:
    """A generation chunk's accepted events (points, channels, weights, LHE records) and its weighted points."""
    arrays = {
        "r": events.r.numpy(),
        "channel": events.channel.numpy(),
        "relative_weight": events.relative_weight,
        "priority": events.priority,
    }
    if records is not None:
        arrays.update({f"record_{name}": getattr(records, name) for name in RECORD_FIELDS})
    tmp = job_dir / f".{EVENTS}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays, **acc.arrays())
    os.replace(tmp, job_dir / EVENTS)


@dataclass
class Chunk:
    """One generation job's output, read back."""

    r: torch.Tensor
    channel: torch.Tensor
    relative_weight: np.ndarray
    priority: np.ndarray
    records: EventRecords | None
    accumulated: Accumulated
    result: dict[str, Any]

    def __len__(self) -> int:
        return len(self.relative_weight)

    def first(self, n: int) -> Chunk:
        """Its ``n`` events of lowest priority in priority order (the events an unweighting for n accepts)."""
        keep = np.argsort(self.priority, kind="stable")[:n]
        index = torch.from_numpy(keep)
        records = None if self.records is None or n == 0 else self.records.take(keep)
        return Chunk(
            self.r[index],
            self.channel[index],
            self.relative_weight[keep],
            self.priority[keep],
            records,
            self.accumulated,
            self.result,
        )

    @classmethod
    def read(cls, job_dir: Path) -> Chunk:
        result = read_result(job_dir)
        if result is None:
            raise FileNotFoundError(f"{job_dir / RESULT}: the job did not finish")
        with np.load(job_dir / EVENTS) as data:
            has_records = "record_nup" in data
            records = EventRecords(**{n: data[f"record_{n}"] for n in RECORD_FIELDS}) if has_records else None
            return cls(
                torch.from_numpy(data["r"]),
                torch.from_numpy(data["channel"]),
                data["relative_weight"],
                data["priority"],
                records,
                Accumulated.from_arrays(data),
                result,
            )


def accumulated(train_dir: Path, chunk_dirs: list[Path]) -> Accumulated:
    """The weighted points of a source's training job (its integration's and every other it drew) and of these
    chunks, pooled: what its quoted sigma is before any precision chunk (the events and records are not read)."""
    with np.load(train_dir / POINTS) as data:
        pooled = Accumulated.from_arrays(data)
    for directory in chunk_dirs:
        with np.load(directory / EVENTS) as data:
            pooled = pooled.merge(Accumulated.from_arrays(data))
    return pooled


def merge_chunks(
    integration: IntegrationResult, first: Accumulated, sample_weights: np.ndarray, chunks: list[Chunk]
) -> tuple[Unweighted, EventRecords | None]:
    """One source's events from its chunks (in chunk order) and sigma pooled over every weighted point:
    the integration's (``first``) and every chunk's. Every chunk counts all its weighted points (also where
    only some of its events are taken); the efficiency and w_max are those of the chunks drawn for events."""
    accumulated = first
    for chunk in chunks:
        accumulated = accumulated.merge(chunk.accumulated)
    for_events = [c for c in chunks if not c.result.get("precision")]  # a precision chunk unweights nothing
    drawn = [c.result["weighted_points"] for c in for_events]
    n_drawn = sum(drawn)

    def mean_over_points(key: str) -> float:
        return sum(c.result[key] * n for c, n in zip(for_events, drawn)) / n_drawn if n_drawn else 0.0

    relative = np.concatenate([c.relative_weight for c in chunks]) if chunks else np.zeros(0)
    with_records = [c.records for c in chunks if c.records is not None]
    events = Unweighted(
        r=torch.cat([c.r for c in chunks]) if chunks else torch.zeros(0),
        channel=torch.cat([c.channel for c in chunks]) if chunks else torch.zeros(0, dtype=torch.long),
        relative_weight=relative,
        cross_section=accumulated.result([c.group for c in integration.channels]),
        weighted_points=accumulated.n_points,
        weighted_inside=accumulated.n_inside,
        w_max=max((c.result["w_max"] for c in for_events), default=0.0),
        efficiency=mean_over_points("efficiency"),
        overweight_share=mean_over_points("overweight_share"),
        n_overweight=int((np.abs(relative) > 1).sum()),
        max_event_weight_ratio=float(np.abs(relative).max() / np.abs(relative).mean()) if len(relative) else 0.0,
        prior_fractions=accumulated.prior_fractions(),
        sample_weights=sample_weights,
        sample_observable=None,
        event_observable=None,
        priority=np.concatenate([c.priority for c in chunks]) if chunks else np.zeros(0),
    )
    return events, EventRecords.concatenate(with_records) if with_records else None
