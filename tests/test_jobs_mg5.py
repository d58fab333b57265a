"""run_mode 2 (multicore) and run_mode 1 (cluster, through a cluster plugin) launches of ``p p > e+ e-``.

Jobs go through MG5aMC's own cluster object: the multicore pool with nb_core = 2, and the test cluster plugin
``tests/cluster_plugin`` (each job a separate subprocess in its own directory). Same seed, same events,
whatever ran where; a job failing once is resubmitted; a job always failing stops the run in one line.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
from pathlib import Path

import pytest
import test_plugin_mg5
from test_plugin_mg5 import (
    DY_REFERENCE,
    check_events,
    cross_section,
    plugin_path,
    read_events,
    set_card,
)

pytestmark = pytest.mark.mg5

dy_output = test_plugin_mg5.dy_output  # the p p > e+ e- output fixture; every launch copies it
CLUSTER_PLUGIN = Path(__file__).resolve().parent / "cluster_plugin"
TINY = dict(nevents=3000, madnis_steps=60, madnis_batch_size=512, madnis_integration_points=20000, iseed=33)


def launch(output: Path, run_dir: Path, fail: str = "", **options: object) -> str:
    """A copy of ``output`` with TINY cards and these me5_configuration ``options``, run by generate_events."""
    subprocess.run(["cp", "-r", str(output), str(run_dir)], check=True)
    set_card(run_dir / "Cards" / "run_card.dat", **TINY)
    config = run_dir / "Cards" / "me5_configuration.txt"
    config.write_text(config.read_text() + "".join(f"\n{k} = {v}" for k, v in options.items()) + "\n")
    root = plugin_path(run_dir.parent / "pp")
    link = root / "MG5aMC_PLUGIN" / "madnis_test_cluster"
    if not link.exists():
        link.symlink_to(CLUSTER_PLUGIN, target_is_directory=True)
    done = subprocess.run(
        [str(run_dir / "bin" / "generate_events"), "-f"],
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(root), MADNIS_TEST_FAIL=fail),
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def multicore_run(dy_output, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("multicore") / "DY"
    return run_dir, launch(dy_output, run_dir, run_mode=2, nb_core=2)


def test_multicore_launch_cross_section_and_exact_events(multicore_run):
    run_dir, out = multicore_run
    sigma, error = cross_section(out)
    assert abs(sigma - DY_REFERENCE[0]) < 3 * (error**2 + DY_REFERENCE[1] ** 2) ** 0.5, (sigma, error)
    assert "MadNIS: 1 training job(s) on 2 core(s)" in out and "2 generation job(s)" in out, out[-3000:]
    check_events(run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz", TINY["nevents"])
    job_log = (run_dir / "madnis" / "jobs" / "run_01" / "P1_qq_ll" / "train" / "job.log").read_text()
    assert "2 bridge worker(s), 1 torch thread(s)" in job_log  # madnis_workers = auto: nb_core for one job
    assert list((run_dir / "madnis").glob("P1_qq_ll*.pt"))


def test_cluster_jobs_resubmitted_once_give_the_same_events(dy_output, multicore_run, tmp_path):
    run_dir = tmp_path / "DY"
    out = launch(dy_output, run_dir, "once:chunk_001", run_mode=1, cluster_type="madnis_subprocess")
    assert re.search(r"1 event generation job\(s\) failed \(P1_qq_ll/chunk_001\): resubmitting once", out), out[-3000:]
    lhe = run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz"
    check_events(lhe, TINY["nevents"])
    assert cross_section(out) == cross_section(multicore_run[1])
    # same seed: the same events, although the jobs ran elsewhere (1 worker each) and one twice
    assert read_events(lhe) == read_events(multicore_run[0] / "Events" / "run_01" / "unweighted_events.lhe.gz")


def test_a_job_failing_twice_stops_the_run_in_one_line(dy_output, tmp_path):
    run_dir = tmp_path / "DY"
    out = launch(dy_output, run_dir, "always:train", run_mode=1, cluster_type="madnis_subprocess")
    log = run_dir / "madnis" / "jobs" / "run_01" / "P1_qq_ll" / "train" / "job.log"
    assert f"MadNIS training job of P1_qq_ll failed twice: injected failure (log: {log})" in out, out[-3000:]
    assert not (run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz").exists()


def test_p_dirs_train_concurrently_and_agree_with_stock(mg5_dir, tmp_path):
    """``p p > z j`` has two P-dirs (g q > z q and q q~ > z g, with mirrors): with run_mode 2 they train as two
    concurrent jobs; the cross section agrees with a stock launch of the same directory, the events are exactly
    nevents and the LHE's <init> block has one line per P-dir."""
    out = test_plugin_mg5.run_mg5(mg5_dir, f"generate p p > z j\noutput madnis {tmp_path / 'ZJ'}\n", tmp_path)
    output = tmp_path / "ZJ"
    assert len(list((output / "SubProcesses").glob("P*"))) == 2, out[-2000:]
    stock_dir = tmp_path / "stock"
    subprocess.run(["cp", "-r", str(output), str(stock_dir)], check=True)
    set_card(stock_dir / "Cards" / "run_card.dat", madnis=False, nevents=2000)
    stock = test_plugin_mg5.generate_events(stock_dir)
    run_dir = tmp_path / "madnis"
    log = launch(output, run_dir, run_mode=2, nb_core=2)
    assert "MadNIS: 2 training job(s) on 2 core(s)" in log, log[-3000:]
    (s, ds), (m, dm) = cross_section(stock), cross_section(log)
    assert abs(m - s) < 3 * (ds**2 + dm**2) ** 0.5, (m, dm, s, ds)
    lhe = run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz"
    check_events(lhe, TINY["nevents"])
    with gzip.open(lhe, "rt") as handle:
        init = re.search(r"<init>\n(.*?)</init>", handle.read(), re.S).group(1).split("\n")
    process_lines = [line for line in init[1:] if line.strip() and not line.lstrip().startswith("<")]
    assert int(init[0].split()[-1]) == 2 and len(process_lines) == 2, init  # <generator> may follow them
