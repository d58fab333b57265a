"""``gridpack = True`` with ``madnis = True``: train once, then ``./run.sh NEVENTS SEED`` generates where unpacked.

One launch of ``p p > e+ e-`` (``run_mode = 0``) writes ``DIR/run_01_gridpack.tar.gz``; it is unpacked in a fresh
directory (the output directory moved away meanwhile, so nothing can reach back into it) and run with two new seeds
and once more with the first. The unweighting efficiency of one run is too noisy to compare (MadEvent's w_max rule
on 20,000 points: 3 % to 13 % over four seeds of one DY sampler), so the packed sampler file is compared with the
trained one, and the repeated seed must repeat its run exactly. (The training run's own seed does not repeat the
training run: its cross section and events also hold its later training batches, ``madnis/training.py``.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from test_plugin_mg5 import check_events, cross_section, read_events, run_mg5

pytestmark = pytest.mark.mg5

TINY = dict(gridpack=True, nevents=1000, madnis_steps=60, madnis_batch_size=512, madnis_integration_points=20000)
COMPILED = (".o", ".a", ".so")


def efficiency(out: str) -> float:
    match = re.findall(r"unweighting efficiency ([\d.]+)%", out)
    assert match, out[-3000:]
    return float(match[-1])


def run_gridpack(gridpack: Path, nevents: int, seed: int, env: dict[str, str], tag: str = "") -> tuple[str, Path]:
    """``./run.sh nevents seed`` in ``gridpack``; its log and the events file it leaves there (renamed per seed and
    ``tag``)."""
    done = subprocess.run(
        ["./run.sh", str(nevents), str(seed)], cwd=gridpack, env=env, capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    events = gridpack / f"events_{seed}{tag}.lhe.gz"
    assert (gridpack / "events.lhe.gz").is_file(), out[-3000:]
    (gridpack / "events.lhe.gz").rename(events)
    return out, events


def compiled_files(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in root.rglob("*") if p.suffix in COMPILED}


@pytest.fixture(scope="module")
def gridpack_launch(mg5_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("gridpack")
    sets = "".join(f"set {name} {value}\n" for name, value in TINY.items())
    script = f"set run_mode 0\ngenerate p p > e+ e-\noutput madnis {work / 'DY'}\nlaunch\n{sets}"
    out = run_mg5(mg5_dir, script, work)
    assert not (work / "DY" / "madnis" / "jobs").exists()  # one process, as the gridpack runs
    return work, out


def test_gridpack_generates_without_training_or_compiling(gridpack_launch, tmp_path):
    work, out = gridpack_launch
    sigma, error = cross_section(out)
    tarball = work / "DY" / "run_01_gridpack.tar.gz"
    assert tarball.is_file(), out[-3000:]
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked)
    packed = unpacked / "madevent" / "madnis" / "P1_qq_ll.madnis.pt"
    assert packed.read_bytes() == (work / "DY" / "madnis" / "P1_qq_ll.madnis.pt").read_bytes()  # the trained sampler
    before = compiled_files(unpacked)
    assert any(p.name == "libmadnis_P1_qq_ll.so" for p in before)
    bin_dir = tmp_path / "bin"  # python3 = this Python, where madnis-mg5 is installed
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", OMP_NUM_THREADS="1")
    (work / "DY").rename(work / "DY.moved")  # the gridpack must not need the directory it was made in
    try:
        runs = {seed: run_gridpack(unpacked, 1000, seed, env) for seed in (11, 12)}
        repeat = run_gridpack(unpacked, 1000, 11, env, tag="_again")
    finally:
        (work / "DY.moved").rename(work / "DY")
    sigmas = {}
    for seed, (log, events) in runs.items():
        assert "training skipped" in log and "no training, no compilation" in log and "Training MadNIS" not in log
        check_events(events, 1000)
        sigmas[seed] = cross_section(log)
        assert abs(sigmas[seed][0] - sigma) < 4 * np.hypot(sigmas[seed][1], error), (sigmas[seed], sigma, error)
    assert sigmas[11] != sigmas[12]
    assert cross_section(repeat[0]) == sigmas[11] and efficiency(repeat[0]) == efficiency(runs[11][0])
    assert read_events(repeat[1]) == read_events(runs[11][1])
    momenta = [{tuple(p[6:10]) for e in read_events(runs[seed][1]) for p in e} for seed in (11, 12)]
    assert not momenta[0] & momenta[1]
    assert compiled_files(unpacked) == before  # nothing compiled, nothing rebuilt


def test_gridrun_stops_in_one_line_on_bad_arguments_or_a_missing_sampler(gridpack_launch, tmp_path):
    with tarfile.open(gridpack_launch[0] / "DY" / "run_01_gridpack.tar.gz") as tar:
        tar.extractall(tmp_path)
    gridrun = [sys.executable, str(tmp_path / "madevent" / "bin" / "gridrun")]
    done = subprocess.run([*gridrun, "many"], capture_output=True, text=True)
    assert done.returncode != 0 and done.stderr.startswith("usage: ./run.sh NEVENTS SEED"), done.stderr
    (tmp_path / "madevent" / "madnis" / "P1_qq_ll.madnis.pt").unlink()
    done = subprocess.run([*gridrun, "10", "1"], capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0 and last.startswith("gridrun: MadNIS gridpack: no trained sampler for P1_qq_ll"), (
        done.stdout[-2000:] + done.stderr[-2000:]
    )
