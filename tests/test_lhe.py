"""LHE writer: MadEvent's format, readable by pylhe and MG5aMC's lhe_parser, atomic on failure."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest
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


def test_interrupted_write_leaves_no_file(tmp_path):
    records = dy_like_records(5000)
    records.helicity = records.helicity.astype(object)
    records.helicity[4000, 2] = "?"  # formatting event 4000 fails, after more than a MB went to the writing thread
    with pytest.raises(TypeError):
        write_lhe(tmp_path / "events.lhe.gz", records, np.ones(5000), LHEInit([LHEProcessInfo(1, 0, 1)]))
    assert list(tmp_path.iterdir()) == []


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
