"""``output madnis``: a stock MadEvent directory + madnis run_card block + hook; madnis = False stays stock."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def run_mg5(mg5_dir: Path, script: str, workdir: Path, *options: str, env: dict[str, str] | None = None) -> str:
    """Run an mg5_aMC script (plugin on PYTHONPATH unless ``env`` overrides it); return stdout + stderr."""
    path = workdir / "script.mg5"
    path.write_text("set automatic_html_opening False\n" + script)
    env = {**os.environ, "PYTHONPATH": str(plugin_path(workdir / "pp")), "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, str(mg5_dir / "bin" / "mg5_aMC"), *options, str(path)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.stdout + done.stderr


def generate_events(run_dir: Path, timeout: int = 600) -> str:
    """``run_dir/bin/generate_events -f`` (one torch thread); its stdout and stderr."""
    done = subprocess.run(
        [str(run_dir / "bin" / "generate_events"), "-f"],
        cwd=run_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
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


def test_ungrouped_output_is_refused_before_writing(mg5_dir, tmp_path):
    out = run_mg5(
        mg5_dir, f"set group_subprocesses False\ngenerate p p > e+ e-\noutput madnis {tmp_path / 'X'}\n", tmp_path
    )
    assert "output madnis needs grouped subprocesses" in out
    assert not (tmp_path / "X").exists()


def test_invalid_madnis_entry_stops_before_compiling(dy_output, tmp_path):
    run_dir = tmp_path / "DY"
    subprocess.run(["cp", "-r", str(dy_output), str(run_dir)], check=True)
    set_card(run_dir / "Cards" / "run_card.dat", madnis_learning_rate="-0.5")
    out = generate_events(run_dir, timeout=300)
    assert "run_card entry madnis_learning_rate = -0.5: must be > 0" in out
    assert not (run_dir / "lib" / "libmodel.a").exists(), "compiled although the card was invalid"
    assert not list((run_dir / "Events").glob("run_*/*.lhe*"))


@pytest.fixture(scope="module")
def dy_stock_run(dy_output, tmp_path_factory):
    """The madnis output run with madnis = False (stock survey/refine), 1000 events."""
    run_dir = tmp_path_factory.mktemp("dy_stock") / "DY"
    subprocess.run(["cp", "-r", str(dy_output), str(run_dir)], check=True)
    set_card(run_dir / "Cards" / "run_card.dat", madnis="False", nevents=1000)
    out = generate_events(run_dir, timeout=600)
    return run_dir, out


def test_madnis_false_runs_stock_madevent(dy_stock_run):
    run_dir, out = dy_stock_run
    match = re.search(r"Cross-section :\s+([\d.]+) \+- ([\d.]+) pb", out)
    assert match, out[-3000:]
    sigma, error = float(match.group(1)), float(match.group(2))
    assert abs(sigma - 844.3) < 3 * (error**2 + 1.85**2) ** 0.5
    assert "Running Survey" in out and "MadNIS" not in out
    with gzip.open(run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz", "rt") as lhe:
        assert lhe.read().count("<event>") == 1000
    assert "unexpected entry" not in out  # the madnis entries are known to MadEvent


# ---------------------------------------------------------------------------------------------------------
# madnis = True end to end (tiny training budget: the statistical checks use the reported errors)

TINY = dict(nevents=1000, madnis_steps=60, madnis_batch_size=512, madnis_integration_points=20000)
DY_REFERENCE = (844.3, 1.85)  # stock MadEvent, default cards (shared/reference/mg5_3.5.7_baselines.md)


def cross_section(out: str) -> tuple[float, float]:
    match = re.findall(r"Cross-section :\s+([\d.eE+-]+) \+- ([\d.eE+-]+) pb", out)
    assert match, out[-4000:]
    return float(match[-1][0]), float(match[-1][1])


def read_events(path: Path) -> list[list[list[str]]]:
    """Particle lines (split) of every event of an LHE(.gz) file."""
    with gzip.open(path, "rt") as lhe:
        text = lhe.read()
    events = []
    for block in re.findall(r"<event>\n(.*?)</event>", text, re.S):
        lines = [l.split() for l in block.splitlines() if l.strip() and not l.lstrip().startswith("<")]
        events.append(lines[1 : 1 + int(lines[0][0])])
    return events


def check_events(path: Path, nevents: int) -> None:
    """Exactly ``nevents``; momentum conserved; every colour line opened and closed once."""
    events = read_events(path)
    assert len(events) == nevents
    for particles in events:
        total = [0.0] * 4
        tags: dict[int, int] = {}
        for p in particles:
            status = int(p[1])
            momentum = [float(x) for x in p[6:10]]
            sign = -1 if status == -1 else 1 if status == 1 else 0
            total = [t + sign * m for t, m in zip(total, momentum)]
            for tag in (int(p[4]), int(p[5])):
                if tag:
                    tags[tag] = tags.get(tag, 0) + 1
        assert max(abs(t) for t in total) < 1e-6 * max(1.0, abs(float(particles[0][9]))), particles
        assert all(count == 2 for count in tags.values()), particles


@pytest.fixture(scope="module")
def dy_launch(mg5_dir, tmp_path_factory):
    """``generate; output madnis; launch; set ...`` in one mg5_aMC session (the plugin is loaded by output), with
    MadEvent's helicity recycling (``madnis_recycle_helicities``, the default)."""
    work = tmp_path_factory.mktemp("dy_launch")
    sets = "".join(f"set {name} {value}\n" for name, value in TINY.items())
    out = run_mg5(mg5_dir, f"generate p p > e+ e-\noutput madnis {work / 'DY'}\nlaunch\n{sets}", work)
    return work / "DY", out


def test_launch_madnis_dy_cross_section_and_events(dy_launch, mg5_dir):
    run_dir, out = dy_launch
    sigma, error = cross_section(out)
    assert "Training MadNIS for P1_qq_ll" in out and "Running Survey" not in out
    assert abs(sigma - DY_REFERENCE[0]) < 3 * (error**2 + DY_REFERENCE[1] ** 2) ** 0.5, (sigma, error)
    lhe = run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz"
    check_events(lhe, TINY["nevents"])
    assert (run_dir / "SubProcesses" / "results.dat").read_text().split()[0]
    html = (run_dir / "HTML" / "run_01" / "results.html").read_text()
    assert "P1_qq_ll" in html and "training.png" in html
    assert (run_dir / "HTML" / "run_01" / "training.png").stat().st_size > 1000
    assert list((run_dir / "madnis").glob("P1_qq_ll*.pt"))


def helicity_combinations(matrix: Path) -> int:
    """NCOMB of a MadEvent matrix element: the helicity combinations it sums."""
    return int(re.search(r"PARAMETER \(\s*NCOMB=(\d+)\)", matrix.read_text()).group(1))


def test_launch_recycles_helicities_as_madevent_and_keeps_the_matrix_element(dy_launch, tmp_path):
    """With ``madnis_recycle_helicities = True`` (the default) the launch writes matrix*_optim.f as MadEvent's survey does (the
    contributing helicities alone) and the bridge evaluates them: the same f J and alpha as the full helicity sums of
    matrix*_orig.f, point by point."""
    from fortran_bridge import ProcessLibrary

    pdir = dy_launch[0] / "SubProcesses" / "P1_qq_ll"
    assert helicity_combinations(pdir / "matrix1_optim.f") < helicity_combinations(pdir / "matrix1_orig.f")
    copy = tmp_path / "DY"
    shutil.copytree(dy_launch[0], copy, symlinks=True, ignore=shutil.ignore_patterns("madnis_build", "Events"))
    for optimised in (copy / "SubProcesses" / "P1_qq_ll").glob("matrix*_optim.*"):
        optimised.unlink()  # the bridge then compiles the full sum, as before the launch
    rng = np.random.default_rng(3)
    with ProcessLibrary(pdir) as recycled, ProcessLibrary(copy / "SubProcesses" / "P1_qq_ll") as full:
        channel = rng.integers(0, recycled.info.n_channels, 2000)
        r = rng.random((2000, recycled.info.ndim))
        a, b = recycled.evaluate(channel, r), full.evaluate(channel, r)
    assert (a.value != 0).sum() > 400  # the points inside the cuts (~30 %)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a.alpha, b.alpha, rtol=1e-12, atol=1e-15)


def test_lhe_is_read_by_pylhe_and_mg5_lhe_parser(dy_launch, mg5_dir):
    pylhe = pytest.importorskip("pylhe")
    lhe = dy_launch[0] / "Events" / "run_01" / "unweighted_events.lhe.gz"
    parsed = pylhe.LHEFile.fromfile(str(lhe))
    assert parsed.init.initInfo.beamA == 2212 and parsed.init.initInfo.numProcesses == 1
    assert sum(1 for _ in parsed.events) == TINY["nevents"]
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from madgraph.various import lhe_parser;"
        "f = lhe_parser.EventFile(sys.argv[2]); n = sum(1 for e in f if abs(e.wgt) > 0);"
        "print('events', n, 'banner', 'mgruncard' in f.get_banner())"
    )
    done = subprocess.run([sys.executable, "-c", code, str(mg5_dir), str(lhe)], capture_output=True, text=True)
    assert f"events {TINY['nevents']} banner True" in done.stdout, done.stderr[-2000:]


def test_pythia8_showers_the_events(dy_launch, tmp_path):
    pythia8 = pytest.importorskip("pythia8mc")
    lhe = tmp_path / "events.lhe"
    with gzip.open(dy_launch[0] / "Events" / "run_01" / "unweighted_events.lhe.gz", "rb") as src:
        lhe.write_bytes(src.read())
    pythia = pythia8.Pythia("", False)
    for setting in ("Beams:frameType = 4", f"Beams:LHEF = {lhe}", "HadronLevel:all = off", "Next:numberCount = 0"):
        assert pythia.readString(setting)
    assert pythia.init()
    showered = sum(1 for _ in range(100) if pythia.next())
    assert showered == 100


def test_new_seed_gives_independent_events_and_keeps_earlier_runs(dy_launch):
    """Second run (new seed from randinit) with a channel-independent scale: channel weights are trained, as in
    the first run with the default channel-dependent scale (its scale channel drawn from alpha)."""
    run_dir, first_out = dy_launch
    assert "a channel drawn from MadEvent's alpha" in first_out  # default dynamical_scale_choice = -1
    assert "channel weights are not trained" not in first_out
    first = run_dir / "Events" / "run_01" / "unweighted_events.lhe.gz"
    before = first.read_bytes()
    set_card(run_dir / "Cards" / "run_card.dat", nevents=200, madnis_steps=20, dynamical_scale_choice=3)
    out = generate_events(run_dir, timeout=600)
    cross_section(out)
    assert "a channel drawn from MadEvent's alpha" not in out and "channel weights are not trained" not in out
    second = run_dir / "Events" / "run_02" / "unweighted_events.lhe.gz"
    check_events(second, 200)
    assert first.read_bytes() == before
    momenta_1 = {tuple(p[6:10]) for e in read_events(first) for p in e}
    momenta_2 = {tuple(p[6:10]) for e in read_events(second) for p in e}
    assert not momenta_1 & momenta_2


def test_reuse_skips_training_and_gives_new_events(dy_launch):
    """madnis_reuse = True: the next run loads DIR/madnis/P1_qq_ll.madnis.pt, its new seed gives new events."""
    run_dir = dy_launch[0]
    before = set((run_dir / "Events").glob("run_*"))
    trained = max(before) / "unweighted_events.lhe.gz"  # the last run trained the saved sampler (same cards)
    with gzip.open(trained, "rt") as lhe:
        sigma_trained, error_trained = map(float, lhe.read().split("<init>\n")[1].splitlines()[1].split()[:2])
    card = run_dir / "Cards" / "run_card.dat"
    set_card(card, nevents=200, madnis_reuse=True)
    try:
        out = generate_events(run_dir, timeout=600)
    finally:
        set_card(card, madnis_reuse=False)
    sigma, error = cross_section(out)
    assert f"Reusing trained sampler from {run_dir / 'madnis' / 'P1_qq_ll.madnis.pt'}" in out
    assert "Training MadNIS" not in out
    assert sigma != sigma_trained and abs(sigma - sigma_trained) < 4 * np.hypot(error, error_trained), (sigma, error)
    (new_run,) = set((run_dir / "Events").glob("run_*")) - before
    check_events(new_run / "unweighted_events.lhe.gz", 200)
    momenta_trained = {tuple(p[6:10]) for e in read_events(trained) for p in e}
    assert not momenta_trained & {tuple(p[6:10]) for e in read_events(new_run / "unweighted_events.lhe.gz") for p in e}


@pytest.fixture
def plugin_in_mg5(mg5_dir):
    """This checkout's plugin installed in MG5aMC (as ``madnis-mg5 install-plugin`` does); the previous state is restored."""
    from madnis_plugin import install

    target = mg5_dir / "PLUGIN" / "madnis_plugin"
    previous = Path(os.readlink(target)) if target.is_symlink() else None
    try:
        install.install(mg5_dir)
    except ValueError as error:
        pytest.skip(f"cannot install the plugin into MG5aMC: {error}")
    if target.resolve() != PACKAGE:
        pytest.skip(f"the installed madnis_plugin package is not this checkout's ({target.resolve()})")
    yield target
    install.uninstall(mg5_dir)
    if previous is not None:
        target.symlink_to(previous, target_is_directory=True)


def test_fresh_session_launch_with_mode_madnis_plugin(dy_launch, mg5_dir, tmp_path, plugin_in_mg5):
    """``./bin/mg5_aMC --mode=madnis_plugin`` launches an existing madnis output after install-plugin."""
    run_dir = dy_launch[0]
    before = set((run_dir / "Events").glob("run_*"))
    out = run_mg5(
        mg5_dir,
        f"launch {run_dir}\nset nevents 100\nset madnis_steps 10\nset madnis_integration_points 5000\n",
        tmp_path,
        "--mode=madnis_plugin",
    )
    cross_section(out)
    assert "Training MadNIS for P1_qq_ll" in out
    (new_run,) = set((run_dir / "Events").glob("run_*")) - before
    check_events(new_run / "unweighted_events.lhe.gz", 100)


def observables(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(m_ll, pT(e-), eta(e-)) per event and the event weights of a Drell-Yan LHE file."""
    with gzip.open(path, "rt") as lhe:
        text = lhe.read()
    values, weights = [], []
    for block in re.findall(r"<event>\n(.*?)</event>", text, re.S):
        lines = [l.split() for l in block.splitlines() if l.strip() and not l.lstrip().startswith("<")]
        weights.append(float(lines[0][2]))
        leptons = {int(p[0]): np.array([float(x) for x in p[6:10]]) for p in lines[1:] if p[1] == "1"}
        em, ep = leptons[11], leptons[-11]
        total = em + ep
        mll = np.sqrt(max(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2, 0.0))
        pt = np.hypot(em[0], em[1])
        values.append((mll, pt, np.arcsinh(em[2] / pt)))
    return np.array(values), np.array(weights)


def test_distributions_match_stock_madevent(dy_launch, dy_stock_run):
    """m_ll, pT(e-), eta(e-): MadNIS events vs stock MadEvent events, chi2/ndf < 2 over 3 x 20 bins."""
    ours, w_ours = observables(dy_launch[0] / "Events" / "run_01" / "unweighted_events.lhe.gz")
    stock, w_stock = observables(dy_stock_run[0] / "Events" / "run_01" / "unweighted_events.lhe.gz")
    chi2, ndf = 0.0, 0
    for k in range(3):
        edges = np.quantile(stock[:, k], np.linspace(0, 1, 21))
        edges[0], edges[-1] = -np.inf, np.inf
        a = np.histogram(ours[:, k], edges, weights=w_ours)[0] / w_ours.sum()
        b = np.histogram(stock[:, k], edges, weights=w_stock)[0] / w_stock.sum()
        var = a / len(w_ours) + b / len(w_stock)
        chi2 += float(np.sum((a - b) ** 2 / np.where(var > 0, var, 1.0)))
        ndf += len(a) - 1
    assert chi2 / ndf < 2.0, (chi2, ndf)


@pytest.mark.slow
def test_launch_madnis_ttg_cross_section(mg5_dir, tmp_path):
    """g g > t t~ g (15 channels in 9 symmetry groups, colour-connected final state) against stock MadEvent.
    MG5aMC's default multicore mode on this 2-core machine: the one P-dir trains in two channel parts (jobs), whose
    cross sections and events add up to the P-dir's, and MadEvent's results list the P-dir once. Without helicity
    recycling (``madnis_recycle_helicities = False``): no matrix*_optim.f, the bridge sums every helicity."""
    sets = "".join(
        f"set {name} {value}\n"
        for name, value in dict(
            nevents=200,
            madnis_steps=40,
            madnis_batch_size=1024,
            madnis_integration_points=30000,
            madnis_recycle_helicities=False,
        ).items()
    )
    out = run_mg5(mg5_dir, f"generate g g > t t~ g\noutput madnis {tmp_path / 'TTG'}\nlaunch\n{sets}", tmp_path)
    sigma, error = cross_section(out)
    assert abs(sigma - 412.9) < 3 * (error**2 + 1.24**2) ** 0.5, (sigma, error)
    check_events(tmp_path / "TTG" / "Events" / "run_01" / "unweighted_events.lhe.gz", 200)
    assert not list(
        (tmp_path / "TTG" / "SubProcesses" / "P1_gg_ttxg").glob("matrix*_optim.f")
    )  # recycling switched off
    if (os.cpu_count() or 1) >= 2:
        assert "MadNIS: 2 training job(s)" in out and "[P1_gg_ttxg.2of2]" in out, out[-3000:]
        results = (tmp_path / "TTG" / "HTML" / "run_01" / "results.html").read_text()
        assert "SubProcesses/P1_gg_ttxg/diagrams.html>P1_gg_ttxg<" in results  # one P-dir row, its cross section
        assert results.count(">P1_gg_ttxg.1of2<") == 0, results
        # the parts' channel groups were dealt by estimated cross section: dealt in turn they had 31 % and 69 %
        parts = [float(x) for x in re.findall(r"\[P1_gg_ttxg\.\dof2\] integration: sigma = ([\d.]+)", out)]
        assert len(parts) == 2 and 0.35 < parts[0] / sum(parts) < 0.65, parts


@pytest.mark.slow
def test_launch_madnis_wzz_agrees_with_madevent_converged(mg5_dir, tmp_path):
    """u d~ > w+ z z (two identical Z, 13 configs, 6 symmetric copies): the whole ``output madnis`` + launch within
    2 combined sigma of MadEvent converged (benchmarks/results/validation.json), precise enough to see the 1 %
    by which a stock launch is low there.

    10^6 integration points: after the default (automatic) training the weights have a tail (GPD shape ~0.4), and
    200k points give 0.34 % (statistical and weight-tail error, madnis.tails), not the 0.2 % asked here. With 200k
    points this seed's integration was 1.0 % low (-2.75 sigma with the tail term, -3.4 without), an unlucky
    stream: nine other streams on the same sampler gave pulls -0.9 to +2.0 (measured by hand), and 20
    integrations of 5 samplers all lie within 2 sigma (benchmarks/results/coverage.md)."""
    validation = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "validation.json"
    row = next(r for r in json.loads(validation.read_text())["rows"] if r["process"] == "u d~ > w+ z z")
    reference, reference_error = row["converged"]
    sets = "set nevents 1000\nset madnis_integration_points 1000000\n"
    out = run_mg5(mg5_dir, f"generate u d~ > w+ z z\noutput madnis {tmp_path / 'WZZ'}\nlaunch\n{sets}", tmp_path)
    sigma, error = cross_section(out)
    assert error < 2e-3 * sigma, (sigma, error)
    assert abs(sigma - reference) < 2 * (error**2 + reference_error**2) ** 0.5, (sigma, error, reference)
    check_events(tmp_path / "WZZ" / "Events" / "run_01" / "unweighted_events.lhe.gz", 1000)


def test_auto_training_budget_stops_and_says_why(dy_launch):
    """``madnis_steps = auto`` (the card default) ends training by the projected time to nevents and says why."""
    run_dir = dy_launch[0]
    card = run_dir / "Cards" / "run_card.dat"
    # the reference is MadEvent's default scale (an earlier test of this launch sets dynamical_scale_choice = 3)
    set_card(card, nevents=500, madnis_steps="auto", dynamical_scale_choice=-1)
    try:
        out = generate_events(run_dir, timeout=600)
    finally:
        set_card(card, nevents=TINY["nevents"], madnis_steps=TINY["madnis_steps"])
    assert re.search(
        r"\[P1_qq_ll\] training stopped: (projected time to \d+ events stopped falling|madnis_max_minutes)", out
    ), out[-3000:]
    sigma, error = cross_section(out)
    assert abs(sigma - DY_REFERENCE[0]) < 3 * (error**2 + DY_REFERENCE[1] ** 2) ** 0.5, (sigma, error)
    newest = max((run_dir / "Events").glob("run_*"))
    check_events(newest / "unweighted_events.lhe.gz", 500)
