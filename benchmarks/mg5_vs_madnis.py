"""Stock MadEvent (survey/refine) vs MadNIS on the same ``output madnis`` directory, back to back (issue 12).

For each case (process, nevents): ``generate PROCESS; output madnis DIR`` once and a copy of it, then
``bin/generate_events`` with ``madnis = False`` (stock) in the directory and ``madnis = True`` in the copy, default
cards, the same ``nb_core`` (``run_mode = 2``): both launches compile (a MadNIS launch in the directory the stock
launch compiled would only link the bridge). Records wall time (compilation included in both),
cross section, matrix-element calls and unweighting efficiency; writes
``benchmarks/results/mg5_vs_madnis.json`` (one row per launch: process, mode, nevents, nb_core, wall_s, xsec,
err, me_calls, efficiency_madevent_rule, me_calls_inside_cuts, efficiency_inside_cuts (stock's basis: the points
inside the cuts, see :class:`Measurement`), events_per_call; MadNIS rows also madnis_steps), ``mg5_vs_madnis.md`` and
``mg5_vs_madnis.png`` (``--output NAME`` renames them).

    python benchmarks/mg5_vs_madnis.py "p p > e+ e-" "g g > t t~ g" --nevents 10000 \
        --case "g g > w+ d u~ g" 100000

``--steps`` with several training budgets (``madnis_steps`` values, e.g. ``--steps auto 500 1000``) launches MadNIS
once per budget after the one stock launch of each case, each in its own fresh copy: the trade-off between training
time, unweighting efficiency and wall time in one run, drawn as a third panel (efficiency against wall time, stock's
point beside MadNIS's budgets).

Python's bytecode: MadEvent runs under ``python -O``, whose ``.opt-1.pyc`` files Python writes on a first import.
Where ``PYTHONDONTWRITEBYTECODE`` is set (this project's machines set it) none is ever written and every launch
recompiles what it imports: for a MadNIS launch torch, numpy and matplotlib, 0.3-0.7 s more wall time at 10k events
(``results/mg5_vs_madnis_small_dont_write_bytecode_stop28.md``, no ``.opt-1.pyc`` on the machine, against the runs
with caches of the same commit; a stock launch imports neither and is not slowed). The
launches here run as on a default Python install, the variable removed from their environment, after one untimed
MadNIS warm-up launch that writes the caches; ``--dont-write-bytecode`` keeps it set: the launches write no cache and
read only those already on the machine (delete the ``.opt-1.pyc`` files first to measure launches that recompile).

Needs MG5aMC (MG5AMC_HOME or /opt/mg5amc), gfortran and the plugin importable by MG5aMC.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from madnis_plugin.install import mg5_home
from madnis_plugin.mg5.wall_clock import parse_line

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    """One launch. ``efficiency``: MadEvent's unweighting efficiency (stock: primary unweighted events / refine
    points from SubProcesses/results.dat; MadNIS: unweighted events / weighted points with w_max by MadEvent's
    rule and the run_card's madnis_max_overweight, as the run prints it). ``points_inside`` and
    ``efficiency_inside``: the same on stock's basis, the points inside the cuts (results.dat's points, ``kevent`` in
    MadEvent's ``dsample.f``, count only points of weight != 0; a MadNIS launch prints its count of them)."""

    sigma: float
    error: float
    seconds: float
    points: int
    efficiency: float
    crashed: int = 0
    phases: dict[str, float] = field(default_factory=dict)  # MadNIS: the launch's wall-time line (mg5/wall_clock.py)
    tail_error: float = 0.0  # MadNIS: the weight-tail part of ``error`` (madnis/tails.py), in quadrature
    variance_error: float | None = None  # MadNIS: ``error`` without it, as the run prints it (stock's is ``error``)
    reach_failed: int = 0  # MadNIS: reach checks that failed (madnis/reach.py), each repeated in the launch's log
    points_inside: int = 0  # of ``points``, those inside the cuts (stock: all of its points)
    efficiency_inside: float = 0.0  # ``efficiency`` per weighted point inside the cuts (stock: its efficiency)


def set_card(card: Path, **entries: object) -> None:
    text = card.read_text()
    for name, value in entries.items():
        text, n = re.subn(rf"^\s*\S+\s*=\s*{name}(\s)", rf"  {value} = {name}\1", text, flags=re.M)
        if n != 1:
            raise SystemExit(f"run_card has no entry {name}")
    card.write_text(text)


def output(mg5: Path, process: str, directory: Path) -> None:
    script = directory.parent / f"{directory.name}.mg5"
    script.write_text(f"set automatic_html_opening False\ngenerate {process}\noutput madnis {directory}\n")
    subprocess.run(
        [sys.executable, str(mg5 / "bin" / "mg5_aMC"), str(script)],
        check=True,
        capture_output=True,
        cwd=directory.parent,
    )  # MG5aMC leaves parser tables (py.py) in its working directory
    if not (directory / "SubProcesses" / "subproc.mg").exists():
        raise SystemExit(f"output madnis failed for {process!r} (is the plugin installed?)")


def process_directories(mg5: Path, processes: list[str], prefix: str, keep: bool) -> Iterator[tuple[str, Path]]:
    """(process, its fresh ``output madnis`` directory) in a temporary work directory, removed at the end
    unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"work directory: {work}", flush=True)
    try:
        for i, process in enumerate(processes):
            directory = work / f"proc{i}"
            output(mg5, process, directory)
            yield process, directory
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def launch(directory: Path, nb_core: int | None = None, **entries: object) -> tuple[str, float]:
    """generate_events' output (also saved next to the directory, kept with --keep) and wall time.

    ``nb_core``: multicore mode (``run_mode = 2``) with that many cores, written to the directory's
    me5_configuration; None keeps the directory's configuration.
    """
    set_card(directory / "Cards" / "run_card.dat", **entries)
    if nb_core is not None:
        config = directory / "Cards" / "me5_configuration.txt"
        config.write_text(config.read_text() + f"\nrun_mode = 2\nnb_core = {nb_core}\n")
    start = time.time()
    done = subprocess.run(
        [str(directory / "bin" / "generate_events"), "-f"],
        cwd=directory,
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    log = done.stdout + done.stderr
    (directory.parent / f"{directory.name}_madnis_{entries['madnis']}.log").write_text(log)
    return log, time.time() - start


class RunFailed(RuntimeError):
    """A launch printed no cross section; the message is MadEvent's error line."""


def cross_section(log: str, directory: Path) -> tuple[float, float]:
    """The launch's last ``Cross-section : X +- Y pb``; else RunFailed with its last error line, without terminal
    colour codes and with the temporary work directory written WORKDIR (the results files quote it)."""
    found = re.findall(r"Cross-section :\s+([\d.eE+-]+) \+- ([\d.eE+-]+) pb", log)
    if not found:
        errors = [l.strip() for l in log.splitlines() if "Error" in l or "error" in l]
        line = errors[-1] if errors else log.strip().splitlines()[-1]
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).replace(str(directory.parent), "WORKDIR")
        raise RunFailed(line)
    return float(found[-1][0]), float(found[-1][1])


def stock(directory: Path, nevents: int, nb_core: int | None = None, **entries: object) -> Measurement:
    """A stock launch (``entries``: other run_card entries, e.g. ``iseed``); points: the survey/refine points that
    SubProcesses/results.dat counts."""
    log, seconds = launch(directory, nb_core, madnis="False", nevents=nevents, **entries)
    sigma, error = cross_section(log, directory)
    fields = (directory / "SubProcesses" / "results.dat").read_text().split()
    points, primary_unweighted = int(fields[3]), int(fields[6])  # results.dat: nevents, ..., nunwgt
    efficiency = primary_unweighted / points
    return Measurement(sigma, error, seconds, points, efficiency, points_inside=points, efficiency_inside=efficiency)


def madnis(
    directory: Path, nevents: int, steps: object = None, nb_core: int | None = None, **entries: object
) -> Measurement:
    """A MadNIS launch (``steps``: madnis_steps, None keeps the card's; ``entries``: other run_card entries, e.g.
    ``iseed``); every matrix-element call counted."""
    entries = entries if steps is None else {**entries, "madnis_steps": steps}
    log, seconds = launch(directory, nb_core, madnis="True", nevents=nevents, **entries)
    sigma, error = cross_section(log, directory)
    found = re.findall(r"MadNIS: (\d+) matrix-element calls in all, unweighting efficiency ([\d.]+)%", log)
    if not found:
        raise RunFailed("the MadNIS launch printed no matrix-element count")
    crashed = sum(int(n) for n in re.findall(r"(\d+) of \d+ point\(s\) stopped the Fortran", log))
    number = r"([\d.eE+-]+)"
    parts = re.findall(
        rf"holds a weight-tail part of {number} pb .*variance alone, as MadEvent quotes it: {number} pb", log
    )
    if not parts:
        raise RunFailed("the MadNIS launch printed no weight-tail part of its error")
    tail, variance = (float(x) for x in parts[-1])
    efficiency = float(found[-1][1]) / 100
    reach_failed = log.count("no longer draws a region")
    inside = re.findall(
        r"MadNIS: (\d+) of them inside the cuts .*unweighting efficiency ([\d.]+)% per weighted point inside", log
    )
    if not inside:
        raise RunFailed("the MadNIS launch printed no count of its points inside the cuts")
    return Measurement(
        sigma,
        error,
        seconds,
        int(found[-1][0]),
        efficiency,
        crashed,
        parse_line(log),
        tail,
        variance,
        reach_failed,
        int(inside[-1][0]),
        float(inside[-1][1]) / 100,
    )


CARD_BUDGET = "card"  # the budget label of a MadNIS launch that keeps the run_card's madnis_steps


@dataclass
class Case:
    """One process at one number of events, launched stock and MadNIS (at training budget ``steps``) back to back;
    the cases of several budgets share their stock launch."""

    process: str
    nevents: int
    stock: Measurement
    madnis: Measurement
    steps: str = CARD_BUDGET

    @property
    def pull(self) -> float:
        return (self.madnis.sigma - self.stock.sigma) / (self.stock.error**2 + self.madnis.error**2) ** 0.5

    @property
    def time_ratio(self) -> float:
        return self.madnis.seconds / self.stock.seconds

    def rows(self, nb_core: int) -> list[dict]:
        """The JSON rows of issue 12: one per launch."""
        return [
            dict(
                process=self.process,
                mode=mode,
                nevents=self.nevents,
                nb_core=nb_core,
                wall_s=round(m.seconds, 1),
                xsec=m.sigma,
                err=m.error,
                me_calls=m.points,
                efficiency_madevent_rule=round(m.efficiency, 5),
                me_calls_inside_cuts=m.points_inside,
                efficiency_inside_cuts=round(m.efficiency_inside, 5),
                **(
                    {"err_weight_tail": m.tail_error, "madnis_steps": self.steps, "reach_checks_failed": m.reach_failed}
                    if mode == "madnis"
                    else {}
                ),
                events_per_call=round(self.nevents / m.points, 5),
                **({"phases_s": m.phases} if m.phases else {}),
            )
            for mode, m in (("stock", self.stock), ("madnis", self.madnis))
        ]

    @property
    def label(self) -> str:
        """The case in tables and plots: process, events and, unless the card's, the training budget."""
        budget = "" if self.steps == CARD_BUDGET else f", madnis_steps = {self.steps}"
        return f"`{self.process}`, {self.nevents:,} events{budget}"


def write_outputs(
    cases: list[Case], failures: list[str], command: str, notes: list[str], nb_core: int, name: str
) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
        f"python {platform.python_version()}"
    )
    date = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
    record = dict(
        command=command,
        machine=machine,
        date=date,
        notes=notes,
        rows=[row for case in cases for row in case.rows(nb_core)],
        failures=failures,
    )
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        "# Stock MadEvent vs MadNIS (same `output madnis` directory, default cards, same cores)",
        "",
        f"- command: `{command}`",
        f"- machine: {machine}; `run_mode = 2`, `nb_core = {nb_core}` for both",
        f"- date: {date}",
        *[f"- note: {note}" for note in notes],
        "",
        "| process | events | madnis_steps | stock sigma [pb] | MadNIS sigma [pb] | MadNIS error without its weight-tail part [pb] "
        "| pull | stock time [s] | MadNIS time [s] "
        "| time MadNIS / stock | stock calls | MadNIS calls | stock efficiency | MadNIS efficiency "
        "| events per call stock / MadNIS | MadNIS calls inside the cuts | MadNIS efficiency per point inside the cuts "
        "| events per call inside the cuts stock / MadNIS | MadNIS points stopping the Fortran | MadNIS reach checks failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        s, m = c.stock, c.madnis
        lines.append(
            f"| `{c.process}` | {c.nevents:,} | {c.steps} | {s.sigma:.4g} +- {s.error:.3g} | {m.sigma:.4g} +- {m.error:.3g} "
            f"| {m.variance_error:.3g} | {c.pull:+.1f} | {s.seconds:.0f} | {m.seconds:.0f} | {c.time_ratio:.2f} | {s.points:,} | {m.points:,} "
            f"| {100 * s.efficiency:.2f} % | {100 * m.efficiency:.2f} % "
            f"| {100 * c.nevents / s.points:.2f} % / {100 * c.nevents / m.points:.2f} % | {m.points_inside:,} "
            f"| {100 * m.efficiency_inside:.2f} % "
            f"| {100 * c.nevents / s.points_inside:.2f} % / {100 * c.nevents / m.points_inside:.2f} % "
            f"| {m.crashed:,} | {m.reach_failed} |"
        )
    lines += [f"| `{failure}` |" for failure in failures]
    lines += [
        "",
        "MadNIS's error holds, in quadrature, a weight-tail part (madnis/tails.py: what the largest weights not yet "
        "drawn may add, from a Pareto fit to the largest ones); stock MadEvent quotes the points' variance alone, "
        "the column beside MadNIS's sigma.",
        "Calls: stock, the points SubProcesses/results.dat counts (the survey/refine results the events come from; "
        "survey iterations that were superseded are not counted, so this is a lower bound); MadNIS, every "
        "matrix-element call the run printed (training, integration, weighted points, points for sigma alone "
        "(`madnis_precision`), one per event record).",
        "Efficiency: stock, primary unweighted events / those points; MadNIS, unweighted events / weighted points "
        "drawn for events (not the points for sigma alone, which unweight nothing) with w_max by MadEvent's rule (at "
        "most `madnis_max_overweight` = 0.1 % of the weight above it), as the run prints it.",
        "Inside the cuts: stock's points (results.dat's, `kevent` in MadEvent's `Source/dsample.f`) are only those "
        "of weight != 0, inside the cuts, where its matrix element is evaluated (a point outside costs MadEvent its "
        "phase space alone, and its survey logs show 5-40 % of `p p > e+ e- j`'s points inside); MadNIS's calls and "
        "efficiency count every point its flow draws, so the columns on stock's basis count MadNIS's points inside the "
        "cuts (the launch prints them) and the event records; efficiency per point inside = efficiency x points / "
        "points inside (a point outside the cuts unweights to nothing).",
        "MadNIS points stopping the Fortran: points the bridge isolated after a MadEvent STOP or crash "
        "(set to zero weight, counted in its warnings).",
        "Reach checks failed: checks of a P-dir's integral against the first half of its training batches that found "
        "it more than 5 sigma below (madnis/reach.py; each failure is mended in training, or reported).",
        "Wall times include compilation (each launch in its own fresh copy); the cores are shared with other jobs "
        "(noisy), so compare the ratio.",
        "",
        "Where the MadNIS launches' time went (the launch's own `MadNIS wall time` line, from the Source "
        "compilation on; MG5aMC's start and its end steps are the rest of the wall time above):",
        "",
        *[
            f"- {c.label}: " + ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in c.madnis.phases.items())
            for c in cases
            if c.madnis.phases
        ],
        "",
    ]
    table = RESULTS / f"{name}.md"
    table.write_text("\n".join(lines))
    draw(cases, RESULTS / f"{name}.png")
    return table


def draw(cases: list[Case], path: Path) -> None:
    """Wall time and events per call of each case, stock beside MadNIS, and the budgets' trade-off (if any)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = budget_groups(cases)
    bars = max(5.0, 0.9 * len(cases))  # inches per bar panel: room for each case's label
    widths = [bars, bars] + ([5.5] if budgets else [])
    fig, axes = plt.subplots(1, len(widths), figsize=(sum(widths), 3.8), gridspec_kw={"width_ratios": widths})
    ax_t, ax_e = axes[:2]
    x = range(len(cases))
    names = [f"{c.process}\n{c.nevents:,}" + ("" if c.steps == CARD_BUDGET else f"\n{c.steps} steps") for c in cases]
    ax_t.bar([i - 0.2 for i in x], [c.stock.seconds for c in cases], 0.4, label="stock MadEvent")
    ax_t.bar([i + 0.2 for i in x], [c.madnis.seconds for c in cases], 0.4, label="MadNIS")
    ax_t.set(ylabel="wall time [s]", title="launch wall time")
    ax_e.bar([i - 0.2 for i in x], [100 * c.nevents / c.stock.points for c in cases], 0.4, label="stock")
    ax_e.bar([i + 0.2 for i in x], [100 * c.nevents / c.madnis.points for c in cases], 0.4, label="MadNIS")
    ax_e.set(ylabel="%", title="events per matrix-element call")
    for ax in (ax_t, ax_e):
        ax.set_xticks(list(x), names, fontsize=6)
        ax.legend(fontsize=7)
    if budgets:
        draw_budgets(axes[2], budgets)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def budget_groups(cases: list[Case]) -> dict[tuple[str, int], list[Case]]:
    """The cases of each (process, nevents) launched at several training budgets (empty when none was)."""
    groups: dict[tuple[str, int], list[Case]] = {}
    for c in cases:
        groups.setdefault((c.process, c.nevents), []).append(c)
    return {key: group for key, group in groups.items() if len(group) > 1}


def draw_budgets(ax, budgets: dict[tuple[str, int], list[Case]]) -> None:
    """Unweighting efficiency against wall time: stock's launch and MadNIS's at each budget, per case."""
    for (process, nevents), group in budgets.items():
        stock = group[0].stock
        line = ax.plot([c.madnis.seconds for c in group], [100 * c.madnis.efficiency for c in group], "o-")[0]
        for c in group:
            ax.annotate(
                c.steps,
                (c.madnis.seconds, 100 * c.madnis.efficiency),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.plot(
            [stock.seconds],
            [100 * stock.efficiency],
            "s",
            color=line.get_color(),
            fillstyle="none",
            label=f"{process}, {nevents:,}: MadNIS (o, by madnis_steps), stock (square)",
        )
    ax.set(
        xlabel="wall time [s]", ylabel="unweighting efficiency [%]", title="training budget: efficiency vs wall time"
    )
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.legend(fontsize=6)


def bytecode_setting(dont_write: bool) -> str:
    """Set the launches' bytecode caching (module docstring) in this process's environment, which every MG5aMC
    subprocess inherits; return how, for the results' header."""
    if dont_write:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        return "not written (PYTHONDONTWRITEBYTECODE=1: the launches read only the .opt-1.pyc already there)"
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return "written and read as on a default install (after one untimed MadNIS warm-up launch)"


def warm_up(directory: Path, nb_core: int) -> None:
    """One untimed MadNIS launch in a copy of ``directory``: Python writes the ``.opt-1.pyc`` files that every
    later launch of MadEvent's ``python -O`` reads (torch's, numpy's, matplotlib's, the plugin's)."""
    copy = directory.with_name(f"{directory.name}_warm_up")
    shutil.copytree(directory, copy, symlinks=True)
    try:
        madnis(copy, 1000, nb_core=nb_core)
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("processes", nargs="*", help='MG5aMC process definitions at --nevents, e.g. "p p > e+ e-"')
    parser.add_argument("--nevents", type=int, default=10000)
    parser.add_argument(
        "--case",
        nargs=2,
        action="append",
        default=[],
        metavar=("PROCESS", "NEVENTS"),
        help="a process at its own nevents",
    )
    parser.add_argument("--nb-core", type=int, default=os.cpu_count() or 1, help="cores of both launches (run_mode 2)")
    parser.add_argument(
        "--steps",
        nargs="+",
        default=[CARD_BUDGET],
        help=f"madnis_steps of the MadNIS launches, one launch per value after each stock launch ({CARD_BUDGET!r}: "
        "the run_card's, the default)",
    )
    parser.add_argument("--mg5", type=Path, default=mg5_home())
    parser.add_argument("--keep", action="store_true", help="keep the process directories and launch logs")
    parser.add_argument("--note", action="append", default=[], help="line for the results header (repeatable)")
    parser.add_argument("--output", default="mg5_vs_madnis", help="results/<output>.json, .md, .png")
    parser.add_argument(
        "--dont-write-bytecode",
        action="store_true",
        help="launch with PYTHONDONTWRITEBYTECODE=1 (no bytecode cache written), no warm-up launch",
    )
    args = parser.parse_args(argv)
    bytecode = bytecode_setting(args.dont_write_bytecode)
    wanted = [(p, args.nevents) for p in args.processes] + [(p, int(n)) for p, n in args.case]
    if not wanted:
        parser.error("give at least one process or --case")
    cases, failures = [], []
    directories = process_directories(args.mg5, [p for p, _ in wanted], "mg5_vs_madnis_", args.keep)
    for i, ((process, directory), (_, nevents)) in enumerate(zip(directories, wanted)):
        try:
            fresh = [directory.with_name(f"{directory.name}_madnis{k}") for k in range(len(args.steps))]
            for copy in fresh:  # each compiles as the stock launch does
                shutil.copytree(directory, copy, symlinks=True)
            if i == 0 and not args.dont_write_bytecode:
                warm_up(directory, args.nb_core)
            s = stock(directory, nevents, args.nb_core)
        except RunFailed as error:
            failures.append(f"{process}` ({nevents} events) failed: `{error}")
            print(f"{process}: FAILED {error}", flush=True)
            continue
        for copy, steps in zip(fresh, args.steps):
            try:
                m = madnis(copy, nevents, None if steps == CARD_BUDGET else steps, args.nb_core)
            except RunFailed as error:
                failures.append(f"{process}` ({nevents} events, madnis_steps {steps}) failed: `{error}")
                print(f"{process} (madnis_steps {steps}): FAILED {error}", flush=True)
                continue
            cases.append(Case(process, nevents, s, m, steps))
            print(f"{process} ({nevents} events, {steps}): stock {asdict(s)}\n  MadNIS {asdict(m)}", flush=True)
    command = "python benchmarks/mg5_vs_madnis.py " + " ".join(
        [f'"{p}"' for p in args.processes]
        + [f"--nevents {args.nevents}", f"--nb-core {args.nb_core}"]
        + [f'--case "{p}" {n}' for p, n in args.case]
        + ([f"--steps {' '.join(args.steps)}"] if args.steps != [CARD_BUDGET] else [])
        + ([f"--output {args.output}"] if args.output != "mg5_vs_madnis" else [])
        + (["--dont-write-bytecode"] if args.dont_write_bytecode else [])
    )
    notes = [f"Python bytecode: {bytecode}", *args.note]
    print(write_outputs(cases, failures, command, notes, args.nb_core, args.output).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
