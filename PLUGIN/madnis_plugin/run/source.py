"""What a run is given: its process sources and settings, the pre-flight check, seeds and sampler paths.

Why apart: every step of the pipeline (:mod:`.train`, :mod:`.sample`, :mod:`.events`) reads these, and
:func:`check_run` runs before any of them (MadEvent's ``checked_settings`` calls it before compiling).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from madnis.config import TrainingConfig

if TYPE_CHECKING:  # torch stays unloaded until a run needs it: the launch checks its settings while it imports torch
    import torch

    from madnis.integrand import Integrand

    from ..lhe import EventRecords

    EventRecordFn = Callable[[torch.Tensor, torch.Tensor, np.random.Generator], EventRecords]
    Observable = Callable[[torch.Tensor], np.ndarray]  # momenta (n, nexternal, 4) -> one value per point


@dataclass
class ProcessSource:
    """One process (a MadEvent P-dir or a built-in process) as the orchestration sees it.

    ``event_records`` evaluates the matrix element once more per accepted point (flavour, colour and helicity
    are drawn from it; ``record_evaluations`` times where the point is evaluated first to choose them);
    ``observable`` (optional, with ``observable_label``) is histogrammed for unweighted
    events vs the weighted truth in the report, e.g. m_ll for Drell-Yan.
    """

    name: str
    integrand: Integrand
    event_records: EventRecordFn
    lprup: int = 1
    channel_names: list[str] | None = None
    observable: Observable | None = None
    observable_label: str = ""
    process: str = ""  # a channel part's P-dir (channel_part); empty: the source is the whole process ``name``
    record_evaluations: int = 1  # matrix-element evaluations per event record

    @property
    def process_name(self) -> str:
        """The process (P-dir) this source is or is a part of: MadEvent's results group parts under it."""
        return self.process or self.name


def channel_part(source: ProcessSource, channels: list[int], name: str) -> ProcessSource:
    """The part of ``source`` that ``channels`` (whole groups) carry, as a source of its own (:mod:`madnis.subset`):
    trained, integrated and unweighted apart; its events and cross section add to the other parts'."""
    from madnis.subset import ChannelSubset

    part = ChannelSubset(source.integrand, channels)

    def event_records(r: torch.Tensor, channel: torch.Tensor, generator: np.random.Generator) -> EventRecords:
        return source.event_records(r, part.global_channel[channel], generator)

    names = None if source.channel_names is None else [source.channel_names[c] for c in part.channels]
    return ProcessSource(
        name,
        part,
        event_records,
        source.lprup,
        names,
        process=source.process_name,
        record_evaluations=source.record_evaluations,
    )


# The automatic target of sigma's relative error is this / sqrt(nevents): then sigma's error adds 0.25^2 = 6 % to the
# statistical variance of the events' total (1 / nevents), so a histogram's normalisation is as good as its events;
# stock MadEvent's refine quoted 0.22-0.33 / sqrt(nevents) on six processes at 10k and 100k events
# (benchmarks/results/mg5_vs_madnis_stop48.json), so the target also asks no more than stock MadEvent gives.
PRECISION_PER_EVENT = 0.25


@dataclass
class RunSettings:
    """What one run does; ``training`` is shared by all sources (seed offset by the source index)."""

    nevents: int
    output_dir: Path
    training: TrainingConfig = field(default_factory=TrainingConfig)
    integration_points: int = 100_000
    events_file: str = "events.lhe.gz"
    run_name: str = "run_01"
    tag: str = "tag_1"
    weighted_batch: int = 20_000
    max_weighted_points: int = 20_000_000
    progress_every: int = 10
    save_models: bool = True  # write output_dir/{name}.madnis.pt after training
    reuse: bool = False  # load output_dir/{name}.madnis.pt instead of training (trains when the file is absent)
    precision: float | None = None  # target relative error of sigma (0: the events' points alone; None: the rule below)

    @property
    def relative_precision(self) -> float:
        """The target relative error of the run's cross section: ``precision``, or :data:`PRECISION_PER_EVENT` /
        sqrt(``nevents``) (why: beside that constant)."""
        return PRECISION_PER_EVENT / math.sqrt(max(self.nevents, 1)) if self.precision is None else self.precision

    def source_precision(self, n_events: float) -> float:
        """The relative error a source with ``n_events`` of the ``nevents`` aims at, for ``steps = auto``'s projection
        (:mod:`madnis.stopping`): the sources share sigma's variance by their shares of sigma, so a source's is
        ``relative_precision`` x sqrt(nevents / n_events) (with the automatic target 0.25 / sqrt(n_events))."""
        return self.relative_precision * math.sqrt(self.nevents / max(n_events, 1.0))


class RunCheckError(ValueError):
    """The run cannot succeed as set up; found before any training (one-line message)."""


def check_run(settings: RunSettings) -> None:
    """Everything about the settings that could fail after training: ``nevents`` and writable directories."""
    if settings.nevents < 1:
        raise RunCheckError(f"nevents = {settings.nevents}: at least one event must be asked for")
    for directory in dict.fromkeys([settings.output_dir, (settings.output_dir / settings.events_file).parent]):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=directory).close()
        except OSError as error:
            raise RunCheckError(f"cannot write to {directory}: {error.strerror or error}") from None


INTEGRATION, SAMPLING, UNWEIGHTING = 1, 2, 3  # random streams of one source (and of its sampling seed)
PRECISION = 5  # the stream of the points drawn for sigma alone (the run's precision target)


def stream_seed(seed: int, index: int, stream: int) -> int:
    """Seed of one random stream (integration or sampling) of source ``index`` in a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed % 2**63, index, stream]).generate_state(1, np.uint64)[0] % 2**63)


def saved_sampler_path(output_dir: Path, name: str) -> Path:
    """Where a source's trained sampler is saved and re-used from."""
    return output_dir / f"{name}.madnis.pt"
