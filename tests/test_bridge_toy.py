"""The bridge's loader, batching, worker sharding and fault handling on a tiny Fortran library.

tests/bridge_fixtures/toy_bridge.f90 implements fortran_bridge/madnis_bridge.h with an analytic
two-channel integrand (exact integral 0.9); needs gfortran, not MG5aMC.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fortran_bridge import BridgeError, BuildError, Draws, ProcessLibrary, build

FIXTURES = Path(__file__).parent / "bridge_fixtures"
sys.path.insert(0, str(FIXTURES))
from checks import momentum_problems, record_problems  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("gfortran") is None, reason="gfortran not found")


@pytest.fixture(scope="module")
def toy_library(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    lib = out / "libtoy.so"
    subprocess.run(
        ["gfortran", "-shared", "-fPIC", "-O2", "-J", str(out), str(FIXTURES / "toy_bridge.f90"), "-o", str(lib)],
        check=True,
    )
    return lib


@pytest.fixture(scope="module")
def toy(toy_library, tmp_path_factory):
    with ProcessLibrary(tmp_path_factory.mktemp("P0_toy"), library=toy_library) as library:
        yield library


def test_info(toy):
    info = toy.info
    assert (info.ndim, info.n_channels, info.nexternal, info.ninitial) == (2, 2, 4, 2)
    assert [(c.index, c.config, c.symmetry_group) for c in info.channels] == [(0, 1, 0), (1, 2, 1)]
    assert info.subprocesses[0].pdg == (2, -2, -11, 11) and not info.subprocesses[0].mirror
    assert info.beam_energies == (50.0, 50.0) and not info.scale_depends_on_channel


def test_values_and_cross_section(toy):
    ev = toy.evaluate(np.array([0, 1, 0]), np.array([[0.25, 0.5], [0.25, 0.5], [0.25, 0.95]]))
    # channel 0: x = 0.5, J = 1; channel 1: x = 0.5, J = 1; third point fails the cut
    np.testing.assert_allclose(ev.value, [0.75, 0.75, 0.0])
    np.testing.assert_allclose(ev.alpha, [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    assert ev.status.tolist() == [0, 0, 2] and ev.ok.all()
    rng = np.random.default_rng(7)
    n = 100_000
    total, variance = 0.0, 0.0
    for c in range(2):
        ev = toy.evaluate(np.full(n, c), rng.random((n, 2)))
        contribution = ev.alpha[:, c] * ev.value
        total += contribution.mean()
        variance += contribution.var() / n
    assert abs(total - 0.9) < 4 * variance**0.5
    assert momentum_problems(ev.momenta, 2, np.zeros(4)) == []


def test_a_library_without_the_subprocess_draw_sums_and_refuses_to_draw(tmp_path):
    """A library built before madnis_allow_subprocess_draw (a gridpack of an older madnis-mg5) loads as before unless
    the draw is asked; then one line says what to do."""
    source = (FIXTURES / "toy_bridge.f90").read_text()
    start = source.index("  subroutine madnis_allow_subprocess_draw")
    end = source.index("  end subroutine", start) + len("  end subroutine")
    (tmp_path / "old_bridge.f90").write_text(source[:start] + source[end:])
    lib = tmp_path / "libold.so"
    subprocess.run(
        ["gfortran", "-shared", "-fPIC", "-O2", "-J", str(tmp_path), str(tmp_path / "old_bridge.f90"), "-o", str(lib)],
        check=True,
    )
    with ProcessLibrary(tmp_path, library=lib) as summing:
        assert summing.evaluate(np.array([0]), np.array([[0.25, 0.5]])).value.tolist() == [0.75]
    with pytest.raises(BridgeError) as error:
        ProcessLibrary(tmp_path, library=lib, draws=Draws(subprocess=True))
    assert "madnis_draw_subprocess = False" in str(error.value) and "\n" not in str(error.value)


def test_sharding_and_batches_are_bit_identical(toy_library, tmp_path):
    rng = np.random.default_rng(3)
    channel, r = rng.integers(0, 2, 5000), rng.random((5000, 2))
    with ProcessLibrary(tmp_path, library=toy_library, workers=2) as two:
        sharded = two.evaluate(channel, r)
    with ProcessLibrary(tmp_path, library=toy_library) as one:
        whole = one.evaluate(channel, r)
        halves = [one.evaluate(channel[s], r[s]) for s in (slice(0, 1234), slice(1234, None))]
    for key in ("value", "alpha", "momenta", "status"):
        np.testing.assert_array_equal(getattr(sharded, key), getattr(whole, key))
        np.testing.assert_array_equal(np.concatenate([getattr(h, key) for h in halves]), getattr(whole, key))


def test_a_grown_library_splits_batches_over_its_new_workers_with_the_same_results(toy_library, tmp_path):
    """A job whose neighbours ended takes their cores by growing its worker pool mid-run (run/jobs.py)."""
    rng = np.random.default_rng(4)
    channel, r = rng.integers(0, 2, 3000), rng.random((3000, 2))
    with ProcessLibrary(tmp_path, library=toy_library) as library:
        before = library.evaluate(channel, r)
        library.grow(3)
        library.grow(2)  # never fewer
        assert library.workers == 3
        after = library.evaluate(channel, r)
        assert [worker.pending for worker in library._pool.workers] == [1000, 1000, 1000]  # each its shard
    for key in ("value", "alpha", "momenta", "status"):
        np.testing.assert_array_equal(getattr(after, key), getattr(before, key))


def test_two_libraries_on_one_directory_keep_their_worker_output_apart(toy_library, tmp_path):
    """Two jobs train channel parts of one P-dir at once: each worker's output (what a crash reports) is its own."""
    with ProcessLibrary(tmp_path, library=toy_library) as one, ProcessLibrary(tmp_path, library=toy_library) as two:
        logs = {worker.log for library in (one, two) for worker in library._pool.workers}
        assert len(logs) == 2 and all(log.exists() for log in logs)
    assert not any(log.exists() for log in logs)  # closed normally: nothing left behind


def test_nonfinite_values_are_flagged_and_counted(toy):
    before = toy.n_nonfinite
    ev = toy.evaluate(np.array([0, 0]), np.array([[0.0, 0.5], [0.5, 0.5]]))  # J = 1/(2x) = inf at x = 0
    assert ev.ok.tolist() == [False, True]
    assert ev.value[0] == 0.0 and np.allclose(ev.alpha[0], 0.5)
    assert toy.n_nonfinite == before + 1


@pytest.mark.parametrize(
    "r1, kill, cause", [(-1.0, False, "exited with code"), (2.0, False, "SIGSEGV"), (-1.0, True, "SIGKILL")]
)
def test_fortran_crash_raises_and_next_call_works(toy, r1, kill, cause):
    good = toy.evaluate(np.array([1]), np.array([[0.3, 0.3]]))
    worker = toy._pool.workers[0].proc
    if kill:  # the worker process (the fork server) is gone too: a new one is started
        worker.kill()
    with pytest.raises(BridgeError, match=cause) as error:
        toy.evaluate(np.array([0, 1]), np.array([[0.5, 0.5], [r1, 0.5]]))
    assert toy.info.name in str(error.value) and "channel(s) [0, 1]" in str(error.value)
    if r1 < 0:
        assert "STOP" in str(error.value)
    assert (toy._pool.workers[0].proc is worker) != kill  # a Fortran crash costs a fork only
    again = toy.evaluate(np.array([1]), np.array([[0.3, 0.3]]))
    np.testing.assert_array_equal(again.value, good.value)


def test_crashing_points_are_isolated_and_the_rest_is_exact(toy_library, tmp_path, caplog):
    rng = np.random.default_rng(5)
    channel, r = rng.integers(0, 2, 200), rng.random((200, 2))
    bad = np.array([3, 77, 150, 151])
    r[bad[:3], 0] = -1.0  # STOP
    r[bad[3], 0] = 2.0  # SIGSEGV
    good = np.setdiff1d(np.arange(200), bad)
    with ProcessLibrary(tmp_path, library=toy_library, workers=2, max_crash_fraction=0.05) as library:
        with caplog.at_level(logging.WARNING, logger="fortran_bridge"):
            ev = library.evaluate(channel, r)
        alone = library.evaluate(channel[good], r[good])
        for key in ("value", "alpha", "momenta", "x1", "x2", "status", "ok"):
            np.testing.assert_array_equal(getattr(ev, key)[good], getattr(alone, key))
        assert ev.status[bad].tolist() == [3] * 4 and not ev.ok[bad].any() and (ev.value[bad] == 0).all()
        np.testing.assert_array_equal(ev.alpha[bad], 0.5)
        assert library.n_crashed == 4 and library.n_nonfinite == 0
        assert sum("r1 < 0 requested a STOP" in m for m in library.crash_messages) == 3
        warnings = [rec.getMessage() for rec in caplog.records]
        assert len(warnings) == 1 and tmp_path.name in warnings[0] and "4 of 200" in warnings[0]
        assert f"channel(s) {sorted(set(channel[bad].tolist()))}" in warnings[0] and "STOP" in warnings[0]
        records = library.event_record(channel[:20], r[:20], seed=2)
        assert records.nup[3] == 0 and records.subprocess[3] == -1 and library.n_crashed == 5
        np.testing.assert_array_equal(records.nup[:3], library.event_record(channel[:3], r[:3], seed=2).nup)
        again = library.evaluate(channel[good[:5]], r[good[:5]])
        np.testing.assert_array_equal(again.value, alone.value[:5])


def test_a_batch_of_mostly_crashing_points_raises(toy_library, tmp_path):
    r = np.full((200, 2), 0.5)
    r[::2, 0] = -1.0
    with ProcessLibrary(tmp_path, library=toy_library, max_crash_fraction=0.05, max_crashes=3) as library:
        with pytest.raises(BridgeError, match=r"STOP.*or more of 200 points crash the Fortran, more than the 3"):
            library.evaluate(np.zeros(200, int), r)
        assert library.evaluate(np.array([0]), np.array([[0.25, 0.5]])).value.tolist() == [0.75]


def test_bad_input_is_rejected(toy):
    with pytest.raises(ValueError, match="channel out of range"):
        toy.evaluate(np.array([2]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="shape"):
        toy.evaluate(np.array([0]), np.array([[0.5, 0.5, 0.5]]))


def test_event_record(toy):
    records = toy.event_record(np.array([0, 1, 1]), np.array([[0.3, 0.2], [0.7, 0.5], [0.5, 0.95]]), seed=1)
    assert records.nup.tolist() == [4, 4, 0] and records.subprocess.tolist() == [0, 0, -1]
    assert records.pdg[0, :4].tolist() == [2, -2, -11, 11]
    for i in range(2):
        assert record_problems(records, i) == []


def test_build_rejects_a_non_process_directory(tmp_path):
    with pytest.raises(BuildError, match="not a MadEvent SubProcesses/P"):
        build(tmp_path)


def test_build_names_a_missing_compiler(tmp_path, monkeypatch):
    pdir = tmp_path / "SubProcesses" / "P1_fake"
    pdir.mkdir(parents=True)
    (tmp_path / "Source").mkdir()
    for path in (
        pdir / "auto_dsig.f",
        pdir / "genps.f",
        tmp_path / "Source" / "run_card.inc",
        tmp_path / "Source" / "param_card.inc",
    ):
        path.write_text("")
    monkeypatch.setenv("FC", "no-such-gfortran")
    with pytest.raises(BuildError, match="'no-such-gfortran' not found: install gfortran"):
        build(pdir)
