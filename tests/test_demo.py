"""`madnis-mg5 demo` end to end: LHE readable by pylhe / MG5aMC / Pythia 8, physics of the events, Z' integral, --reuse."""

from __future__ import annotations

import gzip
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from dy_vegas_reference import vegas_drell_yan
from madnis_plugin.cli import main

DEMO = ["--steps", "40", "--batch-size", "512", "--events", "300", "--integration-points", "20000", "--seed", "3"]


def run_demo(directory: Path, *extra: str) -> Path:
    assert main(["demo", "--output", str(directory), *DEMO, *extra]) == 0
    return directory


@pytest.fixture(scope="module")
def sm_run(tmp_path_factory) -> Path:
    return run_demo(tmp_path_factory.mktemp("demo_sm"))


@pytest.fixture(scope="module")
def zprime_run(tmp_path_factory) -> Path:
    return run_demo(tmp_path_factory.mktemp("demo_zprime"), "--zprime")


def lepton_masses(path: Path) -> tuple[np.ndarray, list]:
    pylhe = pytest.importorskip("pylhe")
    events = list(pylhe.LHEFile.fromfile(str(path)).events)
    masses = []
    for event in events:
        p = np.array([[q.e, q.px, q.py, q.pz] for q in event.particles])
        status = np.array([q.status for q in event.particles])
        incoming, outgoing = p[status == -1].sum(0), p[status == 1].sum(0)
        assert np.allclose(incoming, outgoing, atol=1e-6 * incoming[0]), "momentum not conserved"
        pair = outgoing
        masses.append(np.sqrt(max(pair[0] ** 2 - (pair[1:] ** 2).sum(), 0)))
    return np.array(masses), events


def test_sm_demo_outputs_and_z_peak(sm_run):
    for name in (
        "events.lhe.gz",
        "report.html",
        "training.png",
        "channels_drell_yan.png",
        "weights_drell_yan.png",
        "observable_drell_yan.png",
    ):
        assert (sm_run / name).stat().st_size > 0, name
    assert not [p for p in sm_run.iterdir() if p.name.endswith(".tmp")]
    report = (sm_run / "report.html").read_text()
    assert re.search(r"Cross section: [\d.]+ &plusmn; [\d.]+ pb</b> \(a weight-tail part of\s+[\d.e-]+ pb", report)
    masses, events = lepton_masses(sm_run / "events.lhe.gz")
    assert len(events) == 300
    assert np.mean(np.abs(masses - 91.188) < 10) > 0.4
    assert all(sorted(int(q.id) for q in e.particles if q.status == 1) == [-11, 11] for e in events)


def test_zprime_demo_has_a_peak_at_400(zprime_run):
    masses, events = lepton_masses(zprime_run / "events.lhe.gz")
    assert len(events) == 300
    on_peak = np.sum(np.abs(masses - 400) < 20)
    sidebands = np.sum((masses > 300) & (masses < 360)) + np.sum((masses > 440) & (masses < 500))
    assert on_peak >= 5 and on_peak > 3 * (sidebands + 1)


def test_reuse_skips_training_and_new_seed_gives_other_events(sm_run, tmp_path, capsys):
    shutil.copy(sm_run / "drell_yan.madnis.pt", tmp_path)
    capsys.readouterr()
    run_demo(tmp_path, "--reuse", "--seed", "4")  # the last --seed wins over DEMO's
    printed = capsys.readouterr().out
    assert f"Reusing trained sampler from {tmp_path / 'drell_yan.madnis.pt'}" in printed
    assert "Training MadNIS" not in printed and "step" not in printed
    assert "sampler re-used" in (tmp_path / "report.html").read_text() and (tmp_path / "training.png").exists()
    masses, events = lepton_masses(tmp_path / "events.lhe.gz")
    reference, _ = lepton_masses(sm_run / "events.lhe.gz")
    assert len(events) == 300 and np.mean(np.abs(masses - 91.188) < 10) > 0.4
    assert len(set(masses.round(6)) & set(reference.round(6))) == 0
    sigma, error = lhe_cross_section(tmp_path / "events.lhe.gz")
    sigma_ref, error_ref = lhe_cross_section(sm_run / "events.lhe.gz")
    assert sigma != sigma_ref and abs(sigma - sigma_ref) < 5 * np.hypot(error, error_ref)


def test_reuse_of_another_process_fails_in_one_line(sm_run, tmp_path, capsys):
    shutil.copy(sm_run / "drell_yan.madnis.pt", tmp_path / "drell_yan_zprime.madnis.pt")  # 2 channels, Z' needs 3
    assert main(["demo", "--output", str(tmp_path), *DEMO, "--zprime", "--reuse"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --reuse: cannot re-use") and "n_channels" in error and "\n" not in error


def lhe_cross_section(path: Path) -> tuple[float, float]:
    with gzip.open(path, "rt") as f:
        text = f.read(200_000)
    line = text.split("<init>\n")[1].splitlines()[1].split()
    return float(line[0]), float(line[1])


def test_zprime_integral_agrees_with_vegas(zprime_run):
    from madnis_plugin.builtin.drell_yan import DrellYanSetup, ZPrime

    reference = vegas_drell_yan(DrellYanSetup(zprime=ZPrime()), seed=11)
    sigma, error = lhe_cross_section(zprime_run / "events.lhe.gz")
    assert abs(sigma - reference.mean) < 3 * np.hypot(error, reference.sdev), (sigma, error, reference)


def test_pythia_showers_100_events(sm_run):
    pythia8mc = pytest.importorskip("pythia8mc")
    pythia = pythia8mc.Pythia("", False)
    for setting in (
        "Beams:frameType = 4",
        f"Beams:LHEF = {sm_run / 'events.lhe.gz'}",
        "PartonLevel:MPI = off",
        "Next:numberCount = 0",
        "Print:quiet = on",
    ):
        assert pythia.readString(setting)
    assert pythia.init()
    showered = sum(1 for _ in range(100) if pythia.next())
    assert showered == 100
    # IDWTUP = -4: Pythia's cross section is the mean event weight (mb); overweight events make it wander a little
    assert pythia.infoPython().sigmaGen() * 1e9 == pytest.approx(
        lhe_cross_section(sm_run / "events.lhe.gz")[0], rel=0.1
    )


@pytest.mark.mg5
def test_mg5_lhe_parser_reads_demo_events(sm_run, mg5_dir):
    sys.path.insert(0, str(mg5_dir))
    from madgraph.various import lhe_parser

    events = list(lhe_parser.EventFile(str(sm_run / "events.lhe.gz")))
    assert len(events) == 300
    assert all([p.status for p in event] == [-1, -1, 1, 1] for event in events)
    # event_norm = average: weights average to sigma (unit weights except the few overweight events)
    sigma = lhe_cross_section(sm_run / "events.lhe.gz")[0]
    assert np.mean([event.wgt for event in events]) == pytest.approx(sigma, rel=1e-6)
    assert np.median([event.wgt for event in events]) <= sigma * (1 + 1e-6)


def test_auto_steps_stop_soon_say_why_and_agree_with_vegas(tmp_path, capsys):
    """Drell-Yan is cheap: with --steps auto training stops after few steps, and says why."""
    from madnis_plugin.builtin.drell_yan import DrellYanSetup

    run_demo(tmp_path, "--steps", "auto")  # the last --steps wins over DEMO's
    printed = capsys.readouterr().out
    stop = [line for line in printed.splitlines() if "training stopped:" in line]
    assert len(stop) == 1 and "projected time to 300 events stopped falling at step" in stop[0], printed
    steps = [int(line.split("step")[1].split("/")[0]) for line in printed.splitlines() if "/auto" in line]
    assert steps and max(steps) <= 200 and "events in" in printed
    reference = vegas_drell_yan(DrellYanSetup(), seed=11)
    sigma, error = lhe_cross_section(tmp_path / "events.lhe.gz")
    assert abs(sigma - reference.mean) < 3 * np.hypot(error, reference.sdev), (sigma, error, reference)
