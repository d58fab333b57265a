"""A plain ``mg5_aMC`` session's ``launch DIR`` with ``madnis = True`` runs MadNIS or stops in one line.

MG5aMC 3.5 launches with its own MadEvent interface and loads plugins only while it builds the launch menu
when an f2py compiler is known; ``output madnis`` sets one in ``Cards/me5_configuration.txt`` and guards
``Source/makefile`` for sessions that cannot load the plugin at all. These tests control PATH (f2py on it
or not) and PYTHONPATH (plugin loadable or not) of the mg5_aMC subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_plugin_mg5 as plugin_tests
from madnis_plugin.mg5.madevent_hook import GUARD, GUARD_BEGIN, fix_user_common_block
from test_plugin_mg5 import check_events, cross_section, run_mg5, set_card

dy_output = plugin_tests.dy_output  # fixtures: the `output madnis` DY directory, the plugin installed in MG5aMC
plugin_in_mg5 = plugin_tests.plugin_in_mg5

TINY = dict(nevents=100, madnis_steps=10, madnis_batch_size=256, madnis_integration_points=5000)
REFUSAL = "did not load the madnis-mg5 plugin"


def session_env(tmp_path: Path, *, plugin: bool, f2py: bool) -> dict[str, str]:
    """PATH without any f2py (a fake one first if ``f2py``), ``python`` = this Python; PYTHONPATH per ``plugin``."""
    bin_dir = tmp_path / "session_bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("python", "python3"):
        (bin_dir / name).unlink(missing_ok=True)
        (bin_dir / name).symlink_to(sys.executable)
    if f2py:
        (bin_dir / "f2py").write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / "f2py").chmod(0o755)
    names = ("f2py", "f2py3", f"f2py3.{sys.version_info.minor}")
    kept = [d for d in os.environ["PATH"].split(":") if d and not any((Path(d) / n).exists() for n in names)]
    env = {"PATH": ":".join([str(bin_dir), *kept])}
    if not plugin:
        env["PYTHONPATH"] = ""
    return env


def plain_launch(mg5_dir: Path, run_dir: Path, tmp_path: Path, *, plugin: bool, f2py: bool) -> str:
    """``launch DIR`` in a plain mg5_aMC session (no ``--mode``)."""
    work = tmp_path / f"session_{'plugin' if plugin else 'bare'}_{'f2py' if f2py else 'nof2py'}"
    work.mkdir()
    return run_mg5(mg5_dir, f"launch {run_dir}\n", work, env=session_env(tmp_path, plugin=plugin, f2py=f2py))


def tiny_copy(source: Path, run_dir: Path, **entries: object) -> Path:
    shutil.copytree(source, run_dir, symlinks=True)
    set_card(run_dir / "Cards" / "run_card.dat", **{**TINY, **entries})
    return run_dir


def assert_madnis_ran(out: str, run_dir: Path) -> None:
    assert "Training MadNIS for P1_qq_ll" in out and "Running Survey" not in out, out[-3000:]
    cross_section(out)
    (run,) = sorted((run_dir / "Events").glob("run_*"))[-1:]
    check_events(run / "unweighted_events.lhe.gz", TINY["nevents"])


def events_files(run_dir: Path) -> set[Path]:
    return set((run_dir / "Events").glob("run_*/*.lhe*"))


def assert_refused(out: str, run_dir: Path, events_before: set[Path]) -> None:
    """The guard's line (naming both ways to run MadNIS), before survey, and no new events."""
    lines = [line for line in out.splitlines() if REFUSAL in line]
    assert lines, out[-3000:]
    assert f"{run_dir}/bin/generate_events" in lines[0] and "--mode=madnis_plugin" in lines[0]
    assert "Running Survey" not in out and "Cross-section" not in out
    assert events_files(run_dir) == events_before


@pytest.mark.mg5
@pytest.mark.parametrize("f2py", [False, True], ids=["no_f2py_on_PATH", "f2py_on_PATH"])
def test_plain_launch_runs_madnis_when_the_plugin_is_loadable(dy_output, mg5_dir, tmp_path, f2py):
    run_dir = tiny_copy(dy_output, tmp_path / "DY")
    out = plain_launch(mg5_dir, run_dir, tmp_path, plugin=True, f2py=f2py)
    assert_madnis_ran(out, run_dir)
    assert "madnis" not in (run_dir / "Source" / "run_card.inc").read_text().lower()


@pytest.mark.mg5
def test_plain_launch_without_the_plugin_stops_then_mode_launch_works(dy_output, mg5_dir, tmp_path, request):
    """No plugin anywhere: one line before survey; then ``--mode=madnis_plugin`` runs MadNIS in the same directory."""
    if (mg5_dir / "PLUGIN" / "madnis_plugin").exists():
        pytest.skip("madnis_plugin is installed in MG5aMC: a plain session loads it")
    run_dir = tiny_copy(dy_output, tmp_path / "DY")
    assert_refused(plain_launch(mg5_dir, run_dir, tmp_path, plugin=False, f2py=False), run_dir, set())
    assert "MADNIS" in (run_dir / "Source" / "run.inc").read_text()  # what the stock session left behind
    request.getfixturevalue("plugin_in_mg5")
    assert_madnis_ran(run_mg5(mg5_dir, f"launch {run_dir}\n", tmp_path, "--mode=madnis_plugin"), run_dir)


@pytest.mark.mg5
def test_stock_output_with_madnis_true_is_guarded_after_its_first_madnis_launch(mg5_dir, tmp_path):
    """``output madevent`` + ``madnis = True``: a session that loads the plugin runs MadNIS and guards the directory."""
    if (mg5_dir / "PLUGIN" / "madnis_plugin").exists():
        pytest.skip("madnis_plugin is installed in MG5aMC: a plain session loads it")
    run_mg5(mg5_dir, f"generate p p > e+ e-\noutput madevent {tmp_path / 'ME'}\n", tmp_path)
    run_dir = tmp_path / "ME"
    card = run_dir / "Cards" / "run_card.dat"
    entries = {name: value for name, value in TINY.items() if name != "nevents"}
    card.write_text(card.read_text() + "  True = madnis\n" + "".join(f"  {v} = {n}\n" for n, v in entries.items()))
    set_card(card, nevents=TINY["nevents"])
    assert_madnis_ran(plain_launch(mg5_dir, run_dir, tmp_path, plugin=True, f2py=True), run_dir)
    before = events_files(run_dir)
    assert_refused(plain_launch(mg5_dir, run_dir, tmp_path, plugin=False, f2py=False), run_dir, before)


RUN_INC = """      INTEGER NEVENTS
      LOGICAL MADNIS  ! added by autodef
      INTEGER USERCUT  ! added by autodef
C     START USER COMMON BLOCK
      COMMON/USER_CUSTOM_RUN/MADNIS,MADNIS_STEPS
     $ ,USERCUT
C     STOP USER COMMON BLOCK
"""


def test_user_common_block_names_only_declared_entries(tmp_path):
    """MG5aMC dropped MADNIS_STEPS' declaration but not its COMMON entry: the block follows the declarations."""
    path = tmp_path / "run.inc"
    path.write_text(RUN_INC)
    fix_user_common_block(path)
    assert path.read_text().endswith("      COMMON/USER_CUSTOM_RUN/MADNIS,USERCUT\nC     STOP USER COMMON BLOCK\n")
    consistent = path.read_text()
    fix_user_common_block(path)
    assert path.read_text() == consistent
    path.write_text("      INTEGER NEVENTS\n" + RUN_INC[RUN_INC.index("C     START") :])
    fix_user_common_block(path)
    assert path.read_text() == "      INTEGER NEVENTS\n"


@pytest.mark.skipif(shutil.which("make") is None, reason="make not found")
def test_makefile_guard_stops_only_a_build_with_madnis_true(tmp_path):
    source = tmp_path / "DIR" / "Source"
    source.mkdir(parents=True)
    (source / "makefile").write_text(
        "all:\n\t@echo built\ncleanall:\n\t@echo cleaned\n" + GUARD.format(begin=GUARD_BEGIN)
    )

    def make(*goals: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", *goals], cwd=source, capture_output=True, text=True)

    assert make().stdout == "built\n"  # no run_card.inc yet
    (source / "run_card.inc").write_text("      MADNIS = .FALSE.\n      MADNIS_REUSE = .TRUE.\n")
    assert make().stdout == "built\n"
    (source / "run_card.inc").write_text("      MADNIS = .TRUE.\n")
    done = make()
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and REFUSAL in done.stderr
    assert f"{tmp_path / 'DIR'}/bin/generate_events" in done.stderr
    assert make("cleanall").stdout == "cleaned\n"
