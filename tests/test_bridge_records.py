"""The record tables of fortran_bridge.records against the C ABI (madnis_bridge.h) and the LHE writer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from madnis_plugin import lhe

from fortran_bridge import records
from fortran_bridge.records import EVALUATE_INPUTS, EVALUATE_OUTPUTS, EVENT_RECORD

HEADER = (Path(records.__file__).parent / "madnis_bridge.h").read_text()


def pointer_arguments(function: str) -> list[tuple[str, str]]:
    """(name, C type) of the pointer arguments of ``function`` in madnis_bridge.h, in order."""
    arguments = re.search(rf"\b{function}\(([^)]*)\)", HEADER).group(1)
    found = [re.fullmatch(r"\s*(?:const\s+)?(\w+)\s*\*\s*(\w+)\s*", a) for a in arguments.split(",")]
    return [(m.group(2), m.group(1)) for m in found if m]


def c_types(table) -> list[tuple[str, str]]:
    return [(f.name, {np.int32: "int", np.float64: "double"}[f.dtype]) for f in table]


def test_evaluate_arguments_follow_the_table():
    assert pointer_arguments("madnis_evaluate") == c_types(EVALUATE_INPUTS + EVALUATE_OUTPUTS)


def test_event_record_arguments_follow_the_table():
    inputs = [("channel", "int"), ("r", "double"), ("u", "double")]
    assert pointer_arguments("madnis_event_record") == inputs + c_types(EVENT_RECORD)


def test_lhe_writer_uses_the_bridge_records():
    assert lhe.EventRecords is records.EventRecords
    empty = records.EventRecords.empty(3, 5)
    assert {k: v.dtype for k, v in vars(empty).items()} == {f.name: np.dtype(f.dtype) for f in EVENT_RECORD}
    assert (empty.helicity == 9).all() and (empty.subprocess == 1).all()
