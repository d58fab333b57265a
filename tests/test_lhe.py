"""LHE writer: MadEvent's format, readable by pylhe and MG5aMC's lhe_parser, atomic on failure."""

from __future__ import annotations

import gzip
import os
import sys
import time
import zlib

import numpy as np
import pytest
from madnis_plugin import lhe
from madnis_plugin.lhe import Banner, EventRecords, LHEInit, LHEProcessInfo, run_card_text, write_lhe


def dy_like_records(n: int) -> EventRecords:
    rng = np.random.default_rng(0)
    rec = EventRecords.empty(n, 4)
    rec.nup[:] = 4
    rec.pdg[:] = [2, -2, -11, 11]
    rec.status[:] = [-1, -1, 1, 1]
    rec.mothers[:, 2:] = [1, 2]
    rec.color[:, 0] = [501, 0]
    rec.color[:, 1] = [0, 501]
    e1, e2 = rng.uniform(10, 100, n), rng.uniform(10, 100, n)
    rec.momenta[:, 0] = np.stack([0 * e1, 0 * e1, e1, e1, 0 * e1], 1)
    rec.momenta[:, 1] = np.stack([0 * e2, 0 * e2, -e2, e2, 0 * e2], 1)
    rec.momenta[:, 2, :4] = rec.momenta[:, 0, :4]  # trivially conserving toy kinematics
    rec.momenta[:, 3, :4] = rec.momenta[:, 1, :4]
    rec.scale[:] = 91.188
    rec.aqcd[:] = 0.13
    rec.aqed[:] = 1 / 132.507
    return rec


def write(tmp_path, name="events.lhe.gz", n=20):
    init = LHEInit([LHEProcessInfo(844.3, 1.85, 844.3, 1)])
    banner = Banner(proc_card="generate p p > e+ e-", run_card=run_card_text([(n, "nevents", "events")]))
    return write_lhe(tmp_path / name, dy_like_records(n), np.full(n, 844.3), init, banner)


def test_madevent_format(tmp_path):
    path = write(tmp_path)
    text = gzip.open(path, "rt").read()
    assert text.startswith('<LesHouchesEvents version="3.0">')
    assert "2212 2212 6.500000e+03 6.500000e+03 0 0 247000 247000 -4 1" in text
    assert "#  Number of Events        :       20" in text
    event = text.split("<event>\n")[1].splitlines()
    assert event[0] == " 4      1 +8.4430000e+02 9.11880000e+01 %14.8e 1.30000000e-01" % (1 / 132.507)
    assert event[1].startswith("        2 -1    0    0  501    0 +0.0000000000e+00")
    assert text.count("<event>") == 20 and text.rstrip().endswith("</LesHouchesEvents>")


def test_pylhe_reads_it(tmp_path):
    pylhe = pytest.importorskip("pylhe")
    path = write(tmp_path)
    events = list(pylhe.LHEFile.fromfile(str(path)).events)
    assert len(events) == 20
    assert [int(p.id) for p in events[0].particles] == [2, -2, -11, 11]


@pytest.mark.parametrize("processes", [1, 2])
def test_interrupted_write_leaves_no_file(tmp_path, processes):
    """One process: event 4000 fails after more than a MB went to the writing thread; two: the child writing the
    second half fails, then the launch writing it in its place, after the first half and the header are written."""
    records = dy_like_records(5000)
    records.helicity = records.helicity.astype(object)
    records.helicity[4000, 2] = "?"
    with pytest.raises(TypeError):
        write_lhe(
            tmp_path / "events.lhe.gz", records, np.ones(5000), LHEInit([LHEProcessInfo(1, 0, 1)]), None, processes
        )
    assert list(tmp_path.iterdir()) == []


def gzip_members(path) -> int:
    data, members = path.read_bytes(), 0
    while data:
        stream = zlib.decompressobj(31)
        stream.decompress(data)
        data, members = stream.unused_data, members + 1
    return members


def several_slices(n_slices: int) -> tuple[EventRecords, np.ndarray, LHEInit]:
    n = n_slices * lhe.MIN_EVENTS_PER_PROCESS + 7
    weights = np.random.default_rng(1).uniform(800.0, 900.0, n)
    return dy_like_records(n), weights, LHEInit([LHEProcessInfo(844.3, 1.85, 900.0, 1)])


@pytest.mark.parametrize("name", ["events.lhe.gz", "events.lhe"])
def test_several_processes_write_the_text_of_one(tmp_path, name):
    records, weights, init = several_slices(3)
    one = write_lhe(tmp_path / "one" / name, records, weights, init)
    three = write_lhe(tmp_path / "three" / name, records, weights, init, processes=3)
    read = gzip.open if name.endswith(".gz") else open
    with read(one, "rt") as a, read(three, "rt") as b:
        text = b.read()
        assert text == a.read() and text.count("<event>") == len(records)
    if name.endswith(".gz"):  # the header with the first slice, (two more slices,) the closing tag
        assert (gzip_members(one), gzip_members(three)) == (2, 4)
    assert [p.name for p in (tmp_path / "three").iterdir()] == [name]  # no part left behind


def test_a_slice_whose_child_failed_is_written_by_the_launch(tmp_path, monkeypatch):
    records, weights, init = several_slices(2)
    launch, write_member = os.getpid(), lhe._write_member

    def fails_in_a_child(raw, gz, texts):
        if os.getpid() != launch:
            raise OSError("the child's disk is full")
        write_member(raw, gz, texts)

    one = write_lhe(tmp_path / "one.lhe.gz", records, weights, init)
    monkeypatch.setattr(lhe, "_write_member", fails_in_a_child)
    two = write_lhe(tmp_path / "two.lhe.gz", records, weights, init, processes=2)
    assert gzip.open(two).read() == gzip.open(one).read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.lhe.gz", "two.lhe.gz"]


def test_a_hung_child_is_stopped_and_its_slice_written_by_the_launch(tmp_path, monkeypatch):
    records, weights, init = several_slices(2)
    launch, write_member = os.getpid(), lhe._write_member

    def hangs_in_a_child(raw, gz, texts):
        if os.getpid() != launch:
            time.sleep(600)  # as a child stuck on a lock another thread held at the fork
        write_member(raw, gz, texts)

    one = write_lhe(tmp_path / "one.lhe.gz", records, weights, init)
    monkeypatch.setattr(lhe, "_write_member", hangs_in_a_child)
    monkeypatch.setattr(lhe, "CHILD_PATIENCE", 0.0)
    monkeypatch.setattr(lhe, "CHILD_GRACE_SECONDS", 0.5)
    started = time.monotonic()
    two = write_lhe(tmp_path / "two.lhe.gz", records, weights, init, processes=2)
    assert time.monotonic() - started < 30
    assert gzip.open(two).read() == gzip.open(one).read()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.lhe.gz", "two.lhe.gz"]


def test_pythia_reads_every_slice(tmp_path):
    pythia8mc = pytest.importorskip("pythia8mc")
    records, weights, init = several_slices(3)
    path = write_lhe(tmp_path / "events.lhe.gz", records, weights, init, processes=3)
    pythia = pythia8mc.Pythia("", False)
    for setting in ("Beams:frameType = 4", f"Beams:LHEF = {path}", "PartonLevel:all = off", "HadronLevel:all = off"):
        assert pythia.readString(setting)
    for setting in ("Check:event = off", "Next:numberCount = 0", "Print:quiet = on"):
        assert pythia.readString(setting)
    assert pythia.init()
    read = 0
    while pythia.next():
        read += 1
    assert read == len(records) and pythia.infoPython().atEndOfFile()


def test_a_failing_disk_write_is_raised_and_leaves_no_file(tmp_path, monkeypatch):
    """The compressing thread's error reaches the caller (not lost in the thread), and nothing is left."""

    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", full)
    with pytest.raises(OSError, match="No space left"):
        write_lhe(tmp_path / "events.lhe.gz", dy_like_records(5000), np.ones(5000), LHEInit([LHEProcessInfo(1, 0, 1)]))
    assert list(tmp_path.iterdir()) == []


def test_concatenate_pads_particles():
    a, b = dy_like_records(3), EventRecords.empty(2, 6)
    both = EventRecords.concatenate([a, b])
    assert both.pdg.shape == (5, 6) and np.all(both.pdg[:3, 4:] == 0) and len(both.take(np.array([0, 4]))) == 2


@pytest.mark.mg5
def test_mg5_lhe_parser_reads_it(tmp_path, mg5_dir):
    sys.path.insert(0, str(mg5_dir))
    from madgraph.various import lhe_parser

    path = write(tmp_path)
    events = list(lhe_parser.EventFile(str(path)))
    assert len(events) == 20 and [p.pid for p in events[0]] == [2, -2, -11, 11]
    assert events[0].wgt == pytest.approx(844.3)
    records, weights, init = several_slices(3)  # a file of several gzip members, read through
    path = write_lhe(tmp_path / "sliced.lhe.gz", records, weights, init, processes=3)
    assert sum(1 for _ in lhe_parser.EventFile(str(path))) == len(records)
