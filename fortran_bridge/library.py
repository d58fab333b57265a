"""``ProcessLibrary``: one MadEvent P-dir's bridge library, evaluated in worker processes.

Batches go to worker processes (see workers.py) as numpy arrays; there is no per-point Python
work. Non-finite results are counted in ``n_nonfinite``, flagged ``ok = False`` and returned
as value 0 with a uniform alpha, never as numbers. Points whose evaluation ends the Fortran
(STOP, e.g. MadEvent's "Clustering failed", or a crash) are isolated, counted in ``n_crashed``,
returned like non-finite ones with status 3 and logged once per batch; a batch where more than
``max_crash_fraction`` of the points (or more than ``max_crashes``) crash raises BridgeError.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .build import BUILD_DIRNAME, build
from .records import EVALUATE_OUTPUTS, EVENT_RECORD, EventRecords, arrays
from .workers import Crashes, Draws, WorkerPool

LOG = logging.getLogger(__name__)
STATUS_CRASHED = next(f.blank for f in EVALUATE_OUTPUTS if f.name == "status")  # the Fortran stopped on the point
KEPT_MESSAGES = 5  # first Fortran messages of crashes kept in ProcessLibrary.crash_messages


@dataclass(frozen=True)
class ChannelInfo:
    """Channel ``index`` (0-based) is MadEvent config ``config``; channels with the same
    ``symmetry_group`` (the channel index of their representative) share a phase-space tree."""

    index: int
    config: int
    symmetry_group: int


@dataclass(frozen=True)
class SubprocessInfo:
    """One flavour assignment of the grouped subprocesses (PDG codes in the event's order)."""

    pdg: tuple[int, ...]
    mirror: bool


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    ndim: int
    n_channels: int
    nexternal: int
    ninitial: int
    channels: list[ChannelInfo]
    subprocesses: list[SubprocessInfo]
    beam_energies: tuple[float, float]
    scale_depends_on_channel: bool
    record_evaluations: int  # matrix-element evaluations per event record (madnis_record_evaluations)


@dataclass
class Evaluation:
    """Arrays for n points: value = f*J in pb, alpha (n, n_channels), momenta (n, nexternal, 4)
    as (E, px, py, pz), x1, x2, status (0 passed cuts, 1 no phase-space point, 2 failed cuts,
    3 the Fortran stopped or crashed on this point), ok (False where the library returned NaN/inf
    or crashed; such points have value 0 and a uniform alpha)."""

    value: np.ndarray
    alpha: np.ndarray
    momenta: np.ndarray
    x1: np.ndarray
    x2: np.ndarray
    status: np.ndarray
    ok: np.ndarray


class ProcessLibrary:
    """The bridge library of one P-dir, served by ``workers`` processes.

    ``library`` overrides the library to load (default: ``build(pdir)``); the workers run in
    ``pdir/madnis_build``. ``draws``: what each point may draw instead of summing (:class:`.workers.Draws`): the
    scale channel, so that the value no longer depends on the channel that generated the point; one subprocess and
    mirror.
    A batch tolerates up to ``max_crash_fraction`` of its points, and at
    most ``max_crashes`` points, crashing the Fortran (each costs about log2(batch) worker
    restarts to isolate); ``n_crashed`` counts them, ``crash_messages`` keeps the first messages.
    """

    def __init__(
        self,
        pdir: Path | str,
        seed: int = 0,
        workers: int = 1,
        library: Path | str | None = None,
        max_crash_fraction: float = 0.01,
        max_crashes: int = 10,
        draws: Draws | None = None,
    ):
        self.pdir = Path(pdir).resolve()
        self.library = Path(library).resolve() if library is not None else build(self.pdir)
        rundir = self.pdir / BUILD_DIRNAME
        rundir.mkdir(parents=True, exist_ok=True)
        self._pool = WorkerPool(self.library, rundir, seed, workers, self.pdir.name, draws or Draws())
        raw = self._pool.info
        self.info = ProcessInfo(
            name=self.pdir.name,
            ndim=raw["ndim"],
            n_channels=raw["n_channels"],
            nexternal=raw["nexternal"],
            ninitial=raw["ninitial"],
            channels=[
                ChannelInfo(i, int(c), int(g)) for i, (c, g) in enumerate(zip(raw["config"], raw["symmetry_group"]))
            ],
            subprocesses=[SubprocessInfo(tuple(int(x) for x in p), bool(m)) for p, m in zip(raw["pdg"], raw["mirror"])],
            beam_energies=raw["beam_energies"],
            scale_depends_on_channel=raw["scale_depends_on_channel"],
            record_evaluations=raw["record_evaluations"],
        )
        self.maxnup = int(raw["maxnup"])
        self.max_crash_fraction, self.max_crashes = max_crash_fraction, max_crashes
        self.n_nonfinite = 0
        self.n_crashed = 0
        self.crash_messages: list[str] = []
        self.fortran_seconds = 0.0

    def _inputs(self, channel: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        channel = np.ascontiguousarray(channel, dtype=np.int32).reshape(-1)
        r = np.ascontiguousarray(r, dtype=np.float64)
        if r.shape != (len(channel), self.info.ndim):
            raise ValueError(f"{self.info.name}: r has shape {r.shape}, expected ({len(channel)}, {self.info.ndim})")
        if len(channel) and (channel.min() < 0 or channel.max() >= self.info.n_channels):
            raise ValueError(f"{self.info.name}: channel out of range 0..{self.info.n_channels - 1}")
        return channel, r

    def evaluate(self, channel: np.ndarray, r: np.ndarray) -> Evaluation:
        """Evaluate f*J, alpha and momenta for points r (n, ndim) of channels ``channel`` (n,)."""
        channel, r = self._inputs(channel, r)
        if len(channel) == 0:
            return Evaluation(ok=np.zeros(0, bool), **arrays(EVALUATE_OUTPUTS, 0, self._sizes()))
        parts = self._map("evaluate", channel, r, blank=self._blank_evaluation)
        self.fortran_seconds += max(p["fortran_seconds"] for p in parts)
        out = {f.name: np.concatenate([p[f.name] for p in parts]) for f in EVALUATE_OUTPUTS}
        ok = (
            np.isfinite(out["value"])
            & np.isfinite(out["alpha"]).all(axis=1)
            & np.isfinite(out["momenta"]).all(axis=(1, 2))
        )
        ok &= out["status"] != STATUS_CRASHED
        bad = ~ok & (out["status"] != STATUS_CRASHED)
        if bad.any():
            self.n_nonfinite += int(bad.sum())
            out["value"][bad] = 0.0
            out["alpha"][bad] = 1.0 / self.info.n_channels
            out["momenta"][bad] = 0.0
        return Evaluation(ok=ok, **out)

    def event_record(self, channel: np.ndarray, r: np.ndarray, seed: int) -> EventRecords:
        """Les Houches records for the points; the subprocess/mirror is drawn with probability
        proportional to its contribution, helicity and colour as MadEvent draws them. Points that
        crash the Fortran get no event (nup 0); the others are then drawn again. Every point's draws
        come from ``seed`` and its own uniform number, so its record does not depend on how the
        points are split over workers or batches."""
        channel, r = self._inputs(channel, r)
        u = np.random.default_rng(seed).random(len(channel))
        parts = self._map("event_record", channel, r, u, extra=(int(seed) % 2**31,), blank=self._blank_records)
        return EventRecords(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})

    def _map(
        self, command: str, channel: np.ndarray, *arrays: np.ndarray, extra: tuple = (), blank: Any = None
    ) -> list[dict[str, Any]]:
        """The workers' results of ``command``; crashing points counted, logged, filled by ``blank``."""
        tolerate = min(self.max_crashes, int(self.max_crash_fraction * len(channel)))
        parts, crashes = self._pool.map(command, channel, *arrays, extra=extra, blank=blank, tolerate=tolerate)
        if crashes.index:
            self._report(command, channel, crashes)
        return parts

    def _report(self, command: str, channel: np.ndarray, crashes: Crashes) -> None:
        self.n_crashed += len(crashes.index)
        self.crash_messages += crashes.messages[: KEPT_MESSAGES - len(self.crash_messages)]
        LOG.warning(
            "%s: %d of %d point(s) stopped the Fortran in %s, channel(s) %s (set to 0, status %d): %s",
            self.info.name,
            len(crashes.index),
            len(channel),
            command,
            sorted({int(c) for c in channel[crashes.index]}),
            STATUS_CRASHED,
            crashes.messages[0],
        )

    def _sizes(self) -> dict[str, int]:
        """The library's sizes named in the record tables."""
        return {"nexternal": self.info.nexternal, "n_channels": self.info.n_channels, "maxnup": self.maxnup}

    def _blank_evaluation(self, n: int) -> dict[str, Any]:
        """``evaluate``'s worker result for n crashed points (uniform alpha)."""
        out: dict[str, Any] = arrays(EVALUATE_OUTPUTS, n, self._sizes(), blank=True)
        out["alpha"][:] = 1.0 / self.info.n_channels
        out["fortran_seconds"] = 0.0
        return out

    def _blank_records(self, n: int) -> dict[str, Any]:
        """``event_record``'s worker result for n crashed points (no event)."""
        return arrays(EVENT_RECORD, n, self._sizes(), blank=True)

    @property
    def workers(self) -> int:
        """The worker processes serving the library now."""
        return len(self._pool.workers)

    def grow(self, workers: int) -> None:
        """Serve with ``workers`` processes from now on where that is more than now (cores that fell idle). The
        results do not change: every value and record is a function of its point (and the record's seed) alone."""
        self._pool.grow(workers)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> ProcessLibrary:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
