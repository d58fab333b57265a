"""The one table of the bridge's per-point arrays: (field, dtype, shape) of ``madnis_evaluate`` and
``madnis_event_record`` (madnis_bridge.h), in the C argument order.

Why: the shared-memory batch, the worker's output arrays, the blank results of crashed points and the
event records written to LHE files all follow from these tuples, so a field changes in one place
(``tests/test_bridge_toy.py`` checks them against madnis_bridge.h). Shapes name the library's sizes
(``ndim``, ``nexternal``, ``n_channels``, ``maxnup``) or are numbers; every array has a leading point axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np


class Field(NamedTuple):
    name: str
    dtype: type
    shape: tuple[str | int, ...] = ()
    blank: float = 0  # value of a point that crashed the Fortran (or of padding)


EVALUATE_INPUTS = (Field("channel", np.int32), Field("r", np.float64, ("ndim",)))
EVALUATE_OUTPUTS = (
    Field("momenta", np.float64, ("nexternal", 4)),
    Field("x1", np.float64),
    Field("x2", np.float64),
    Field("value", np.float64),
    Field("alpha", np.float64, ("n_channels",)),  # crashed: uniform, filled by the caller
    Field("status", np.int32, (), 3),  # 3: the point stopped or crashed the Fortran
)
EVENT_RECORD = (
    Field("nup", np.int32),
    Field("pdg", np.int32, ("maxnup",)),
    Field("status", np.int32, ("maxnup",)),
    Field("mothers", np.int32, ("maxnup", 2)),
    Field("color", np.int32, ("maxnup", 2)),
    Field("momenta", np.float64, ("maxnup", 5)),
    Field("helicity", np.int32, ("maxnup",), 9),  # 9: not set (MadEvent's convention)
    Field("scale", np.float64),
    Field("aqcd", np.float64),
    Field("aqed", np.float64),
    Field("subprocess", np.int32, (), -1),  # -1: no event
)


def shape(field: Field, n: int, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The array shape of ``field`` for n points."""
    return (n, *(sizes[d] if isinstance(d, str) else d for d in field.shape))


def arrays(table: Sequence[Field], n: int, sizes: Mapping[str, int], blank: bool = False) -> dict[str, np.ndarray]:
    """Zeroed arrays of every field for n points (``blank``: each field's blank value)."""
    return {f.name: np.full(shape(f, n, sizes), f.blank if blank else 0, f.dtype) for f in table}


@dataclass
class EventRecords:
    """Les Houches records of n events padded to m entries (fields and dtypes: :data:`EVENT_RECORD`):
    nup (n,), pdg, status (-1 incoming, 1 final, 2 resonance), mothers (n, m, 2) 1-based, color (n, m, 2),
    momenta (n, m, 5) = (px, py, pz, E, m), helicity (9 = not set), scale (GeV), aqcd, aqed, subprocess
    (the bridge: index into its subprocesses, -1 for no event; in an LHE file: the process's LPRUP)."""

    nup: np.ndarray
    pdg: np.ndarray
    status: np.ndarray
    mothers: np.ndarray
    color: np.ndarray
    momenta: np.ndarray
    helicity: np.ndarray
    scale: np.ndarray
    aqcd: np.ndarray
    aqed: np.ndarray
    subprocess: np.ndarray

    @classmethod
    def empty(cls, n: int, m: int) -> EventRecords:
        """n events without entries (every field at its blank value, subprocess 1)."""
        records = cls(**arrays(EVENT_RECORD, n, {"maxnup": m}, blank=True))
        records.subprocess[:] = 1
        return records

    def __len__(self) -> int:
        return int(self.nup.shape[0])

    def take(self, indices: np.ndarray) -> EventRecords:
        return EventRecords(**{f.name: getattr(self, f.name)[indices] for f in fields(self)})

    @classmethod
    def concatenate(cls, parts: Sequence[EventRecords]) -> EventRecords:
        """Join record batches, padding the entry axis to the widest."""
        m = max(p.pdg.shape[1] for p in parts)
        padded = []
        for p in parts:
            if p.pdg.shape[1] < m:
                q = cls.empty(len(p), m)
                for f in fields(p):
                    a = getattr(p, f.name)
                    target = getattr(q, f.name)
                    if a.ndim >= 2:
                        target[:, : a.shape[1]] = a
                    else:
                        target[:] = a
                p = q
            padded.append(p)
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in padded]) for f in fields(cls)})
