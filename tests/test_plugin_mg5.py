"""``output madnis``: a stock MadEvent directory + madnis run_card block + hook; madnis = False stays stock."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "PLUGIN" / "madnis_plugin"

pytestmark = pytest.mark.mg5


def plugin_path(root: Path) -> Path:
    """A PYTHONPATH entry holding MG5aMC_PLUGIN/madnis_plugin (MG5aMC scans it; /opt/mg5amc stays untouched)."""
    plugins = root / "MG5aMC_PLUGIN"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "__init__.py").write_text("")
    link = plugins / "madnis_plugin"
    if not link.exists():
        link.symlink_to(PACKAGE, target_is_directory=True)
    return root


def run_mg5(mg5_dir: Path, script: str, workdir: Path, *options: str) -> str:
    """Run an mg5_aMC script; return its output (stdout + stderr)."""
    path = workdir / "script.mg5"
    path.write_text("set automatic_html_opening False\n" + script)
    env = dict(os.environ, PYTHONPATH=str(plugin_path(workdir / "pp")), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(mg5_dir / "bin" / "mg5_aMC"), *options, str(path)], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=600)
    return done.stdout + done.stderr


def set_card(card: Path, **entries: object) -> None:
    text = card.read_text()
    for name, value in entries.items():
        text, n = re.subn(rf"^\s*\S+\s*=\s*{name}(\s)", rf"  {value} = {name}\1", text, flags=re.M)
        assert n == 1, name
    card.write_text(text)


@pytest.fixture(scope="module")
def dy_output(mg5_dir, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("dy")
    log = run_mg5(mg5_dir, f"generate p p > e+ e-\noutput madnis {work / 'DY'}\n", work)
    assert (work / "DY" / "SubProcesses" / "P1_qq_ll").is_dir(), log[-3000:]
    return work / "DY"


def test_output_is_a_madevent_directory_with_the_madnis_block(dy_output):
    for card in ("run_card.dat", "run_card_default.dat"):
        text = (dy_output / "Cards" / card).read_text()
        assert re.search(r"^\s*True = madnis !", text, re.M) and "= madnis_steps !" in text
    assert (dy_output / "bin" / "madevent").exists() and (dy_output / "Cards" / "me5_configuration.txt").exists()
    assert "madnis-mg5 hook" in (dy_output / "bin" / "internal" / "madevent_interface.py").read_text()
    assert (dy_output / "SubProcesses" / "subproc.mg").read_text().split() == ["P1_qq_ll"]
    assert "hel_recycling = True" in (dy_output / "SubProcesses" / "proc_characteristics").read_text()


def test_invalid_madnis_entry_stops_before_compiling(dy_output, tmp_path):
    run_dir = tmp_path / "DY"
    subprocess.run(["cp", "-r", str(dy_output), str(run_dir)], check=True)
    set_card(run_dir / "Cards" / "run_card.dat", madnis_lr="-0.5")
    done = subprocess.run([str(run_dir / "bin" / "generate_events"), "-f"], cwd=run_dir, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = done.stdout + done.stderr
    assert "run_card entry madnis_lr = -0.5: must be > 0" in out
    assert not (run_dir / "lib" / "libmodel.a").exists(), "compiled although the card was invalid"
    assert not list((run_dir / "Events").glob("run_*/*.lhe*"))


def test_madnis_false_runs_stock_madevent(dy_output, tmp_path):
    run_dir = tmp_path / "DY"
    subprocess.run(["cp", "-r", str(dy_output), str(run_dir)], check=True)
    set_card(run_dir / "Cards" / "run_card.dat", madnis="False", nevents=1000)
    done = subprocess.run([str(run_dir / "bin" / "generate_events"), "-f"], cwd=run_dir, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    out = done.stdout + done.stderr
    match = re.search(r"Cross-section :\s+([\d.]+) \+- ([\d.]+) pb", out)
    assert match, out[-3000:]
    sigma, error = float(match.group(1)), float(match.group(2))
    assert abs(sigma - 844.3) < 3 * (error ** 2 + 1.85 ** 2) ** 0.5
    assert "Running Survey" in out and "MadNIS" not in out
    with gzip.open(run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz", "rt") as lhe:
        assert lhe.read().count("<event>") == 1000
    assert "unexpected entry" not in out  # the madnis entries are known to MadEvent
