"""Checks made before anything compiles when madnis = True, and the run_card registration of the entries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from madnis_plugin.mg5.madevent_hook import madnis_requested, register_run_card_entries
from madnis_plugin.mg5.madevent_run import checked_settings, mg5_version_of
from madnis_plugin.settings import MadnisSettings


class FakeMadEvent:
    """The attributes of a MadEventCmd that the checks read."""

    class InvalidCmd(Exception):
        pass

    def __init__(self, me_dir: Path, compiler: str = "gfortran", version: str = "3.5.7", **card):
        self.me_dir = str(me_dir)
        (me_dir / "MGMEVersion.txt").write_text(version + "\n")
        self.options = {"fortran_compiler": compiler}
        self.run_name = "run_01"
        self.run_card = {"madnis": True, "gridpack": False, "nevents": 10, "run_tag": "tag_1", **card}


def one_line_error(cmd: FakeMadEvent) -> str:
    with pytest.raises(FakeMadEvent.InvalidCmd) as error:
        checked_settings(cmd)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_valid_card_passes(tmp_path):
    if not __import__("shutil").which("gfortran"):
        pytest.skip("gfortran not installed")
    settings = checked_settings(FakeMadEvent(tmp_path, madnis_steps=5))
    assert settings.training.steps == 5


def test_invalid_entry_missing_compiler_version(tmp_path):
    assert "madnis_batch_size" in one_line_error(FakeMadEvent(tmp_path, madnis_batch_size="0"))
    assert "no-such-fortran not found" in one_line_error(FakeMadEvent(tmp_path, compiler="no-such-fortran"))
    assert "MG5aMC 3.6.0" in one_line_error(FakeMadEvent(tmp_path, compiler="sh", version="3.6.0"))


def test_gridpack_is_accepted(tmp_path):
    assert checked_settings(FakeMadEvent(tmp_path, compiler="sh", gridpack=True)).madnis is True


def test_nevents_and_unwritable_events_fail_before_anything_compiles(tmp_path):
    assert "nevents = 0" in one_line_error(FakeMadEvent(tmp_path, compiler="sh", nevents=0))
    (tmp_path / "Events").write_text("a file where the Events directory belongs\n")
    assert "cannot write to" in one_line_error(FakeMadEvent(tmp_path, compiler="sh"))


def test_reuse_is_accepted(tmp_path):
    assert checked_settings(FakeMadEvent(tmp_path, compiler="sh", madnis_reuse=True)).reuse is True


def test_version_file(tmp_path):
    assert mg5_version_of(tmp_path) is None
    (tmp_path / "MGMEVersion.txt").write_text("3.5.7\n")
    assert mg5_version_of(tmp_path) == (3, 5, 7)


@pytest.mark.parametrize(
    "value,expected", [(True, True), (False, False), ("True", True), (".false.", False), ("T", True)]
)
def test_madnis_requested(value, expected):
    assert madnis_requested({"madnis": value}) is expected
    assert madnis_requested({}) is False


@pytest.mark.mg5
def test_run_card_registration_keeps_entries_out_of_fortran_and_stock_cards(mg5_dir, tmp_path):
    sys.path.insert(0, str(mg5_dir))
    try:
        import madgraph.various.banner as banner
    finally:
        sys.path.remove(str(mg5_dir))
    register_run_card_entries(banner.RunCardLO)
    register_run_card_entries(banner.RunCardLO)  # idempotent
    card = banner.RunCardLO()
    assert card["madnis"] is False and card["madnis_steps"] == "auto"
    assert "madnis" not in card.includepath[True] and "madnis_lr" in card.includepath[False]
    stock = tmp_path / "run_card.dat"
    card.write(str(stock), template=str(mg5_dir / "Template" / "LO" / "Cards" / "run_card.dat"))
    assert "madnis" not in stock.read_text()  # a stock output's card never shows the entries
    card.read(str(stock))
    card["madnis_steps"] = "250"
    assert MadnisSettings.from_card(card).training.steps == 250


def test_the_madevent_hook_and_the_job_server_start_load_no_torch():
    """Every MadEvent command of an ``output madnis`` directory imports the hook (stock launches, ``treatcards``):
    it must not pay torch's import (1-3 s); nor may starting the launch's job server, which comes before it."""
    modules = ["madnis_plugin.mg5.madevent_hook", "madnis_plugin.mg5.launch_server", "madnis.config"]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "from madnis_plugin.settings import MadnisSettings\n"
        + "MadnisSettings()\n"
        + "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_wall_time_line_adds_each_phase_up_and_reads_back():
    """Phases add up where they recur (two rounds of jobs), keep the order they first ended in, and the benchmark
    reads the last line of a launch's output back."""
    from madnis_plugin.mg5.wall_clock import WallClock, parse_line

    now = [10.0]
    clock = WallClock(lambda: now[0])
    for t, phase in ((12.5, "Source compilation"), (13.0, "preparing jobs"), (20.0, "training jobs")):
        now[0] = t
        clock.mark(phase)
    now[0] = 20.5
    clock.mark("preparing jobs")
    line = clock.line()
    assert line == ("MadNIS wall time 10.5 s: Source compilation 2.5 s, preparing jobs 1.0 s, training jobs 7.0 s")
    out = f"INFO: MadNIS wall time 1.0 s: plots 1.0 s\nINFO: {line} \nDone\n"
    assert parse_line(out) == {"total": 10.5, "Source compilation": 2.5, "preparing jobs": 1.0, "training jobs": 7.0}
    assert parse_line("no such line") == {}


def test_a_missing_dependency_is_one_line_before_anything_runs(monkeypatch, tmp_path):
    """madnis = True with a module of the run code missing: one line naming it, before any compilation or job server
    (the run code loads in the background later, where an ImportError would come after the Source compilation)."""
    from madnis_plugin.mg5 import madevent_hook

    class FakeBanner:
        class RunCard:
            def write_autodef(self, output_dir, output_file=None):
                pass

        class RunCardLO(RunCard):
            def default_setup(self):
                pass

    class Launch(FakeMadEvent):
        ran: list[str] = []

        def run_generate_events(self, switch_mode, args):
            self.ran.append("stock")

        def configure_directory(self):
            self.ran.append("compiled")

    madevent_hook.install(Launch, FakeBanner)
    monkeypatch.setattr(madevent_hook, "RUN_DEPENDENCIES", ("torch", "no_such_module_for_madnis"))
    with pytest.raises(FakeMadEvent.InvalidCmd) as error:
        Launch(tmp_path).run_generate_events(None, [])
    assert str(error.value).endswith("no module no_such_module_for_madnis") and "\n" not in str(error.value)
    assert Launch.ran == []
    Launch(tmp_path, madnis=False).run_generate_events(None, [])
    assert Launch.ran == ["stock"]
