"""``generate_events`` with ``madnis = True``: MadNIS replaces survey/refine/combine inside MadEvent's run.

Everything MadEvent does around the integration stays MadEvent's: card questions and ``set`` commands,
run names, ``treatcards`` and the Source compilation (``configure_directory``), the helicity recycling of the
matrix elements where ``madnis_recycle_helicities`` asks for it (:mod:`.helicities`), the random seed
(``iseed`` or ``randinit``, advanced after each run), the banner, ``results.dat``, the HTML results page
and crossx.html, the shell summary ``Cross-section : X +- Y pb``, and the later steps (decay, shower).
In between, the shared run orchestration trains, integrates and unweights each P-dir through the
Fortran bridge. Nothing here imports ``madgraph``: MadEvent's modules come from the command's own module
(MG5aMC's or an output's ``bin/internal`` copy).
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import mg5_version_supported
from ..lhe import LHEInit
from ..run.source import ProcessSource, RunCheckError, RunSettings, check_run
from ..settings import MadnisSettings
from .gridpack import create_gridpack
from .helicities import recycle_helicities
from .wall_clock import WallClock

if TYPE_CHECKING:
    from ..run.job_server import JobServer
    from ..run.orchestrate import RunResult

logger = logging.getLogger("madevent.madnis")


def run_madnis(cmd: Any, server: JobServer | None = None) -> None:
    """Run MadNIS for the MadEvent command ``cmd`` (run name and run_card already set up; ``server``: the launch's
    job server, :func:`.launch_server.job_server`, not yet started); with ``gridpack = True`` the run is packed into
    MadEvent's gridpack afterwards."""
    settings = checked_settings(cmd)
    os.environ.setdefault("FC", cmd.options.get("fortran_compiler") or "gfortran")  # bridge builds like Source
    # the run code (torch: 1-3 s here, as MadEvent's ``python -O`` may recompile its bytecode) and matplotlib
    # (0.3-0.5 s, seconds when its font cache is new) load while the Source compiles and the helicities are recycled:
    # their makes leave cores idle (measured: Source make and these imports 3.3 s together, 4.8 s one after the other)
    imports = threading.Thread(target=_import_all, args=(HEAVY_MODULES,), daemon=True)
    imports.start()
    clock = WallClock()
    cmd.configure_directory()  # MadEvent's Source compilation, on every core
    clock.mark("Source compilation")
    if settings.recycle_helicities:
        recycle_helicities(cmd, _madevent_class(cmd))
        clock.mark("helicity recycling")
    if server is not None:  # forked with the job code imported: the server imports nothing (job_server docstring)
        imports.join()
        server.start()
    seed = int(cmd.random)
    cmd.update_random()
    cmd.save_random()
    generate_events(cmd, settings, seed, server=None if server is None else server.address, clock=clock)
    if cmd.run_card["gridpack"]:
        create_gridpack(cmd)


HEAVY_MODULES = ("..run.job", "..mg5.cluster_jobs", "..run.orchestrate", "..bridge_integrand", "..run.plots")


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name, __package__)


def generate_events(
    cmd: Any,
    settings: MadnisSettings,
    seed: int,
    prebuilt: bool = False,
    server: str | None = None,
    clock: WallClock | None = None,
) -> None:
    """Train (or re-use), integrate and unweight every P-dir, write the events, publish the results in MadEvent's
    pages; ``prebuilt``: load the bridge libraries compiled before (a gridpack's), never compile; ``server``: the
    job server of a multicore launch (:func:`.launch_server.job_server`); ``clock``: the launch's phases so far
    (:mod:`.wall_clock`), whose line ends the log."""
    clock = clock or WallClock()
    module = sys.modules[_madevent_class(cmd).__module__]
    nevents = int(cmd.run_card["nevents"])
    logger.info("Generating %d events with run name %s (MadNIS, seed %d)", nevents, cmd.run_name, seed)
    cmd.update_status("MadNIS: build, train, integrate", level=None)

    if settings.training.train_channel_weights and scale_depends_on_channel(cmd.run_card):
        logger.info(
            "MadNIS: the scale depends on the channel (dynamical_scale_choice = %s): %s",
            cmd.run_card["dynamical_scale_choice"],
            "each point clusters it with a channel drawn from MadEvent's alpha, so learned channel weights keep "
            "MadEvent's cross section"
            if settings.draw_scale_channel
            else "channel weights kept at MadEvent's alpha (madnis_draw_scale_channel = False)",
        )
    me_dir = Path(cmd.me_dir)
    run_settings = madnis_run_settings(cmd, settings, seed)
    header = MadEventHeader(cmd, module, seed)
    if cmd.cluster_mode in (1, 2) and not prebuilt:  # MG5aMC's cluster or multicore pool: MadNIS as jobs
        from .cluster_jobs import run_as_jobs

        run = run_as_jobs(cmd, settings, run_settings, header, lhe_init(cmd.run_card), log_progress, server, clock)
        clock.mark("merging and writing the events")
    else:
        run = run_in_process(cmd, settings, run_settings, header, seed, prebuilt)
        clock.mark("training, integration and events")
    from ..run.plots import plot_run  # matplotlib here only (imported ahead by run_madnis), not in every job
    from .cluster_jobs import launch_cores

    html_dir = me_dir / "HTML" / cmd.run_name
    html_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_run(run, html_dir, processes=launch_cores(cmd))  # the cores are idle now: the plots share them
    clock.mark("plots")
    publish(cmd, module, run, [p.name for p in plots])
    clock.mark("results pages")
    logger.info(clock.line())


def scale_depends_on_channel(run_card: Any) -> bool:
    """MadEvent's rule, as the bridge reads it from run.inc (madnis_info): with ``dynamical_scale_choice = -1``
    the clustering scale follows the channel's diagram unless every scale is fixed."""
    fixed = all(run_card[name] for name in ("fixed_ren_scale", "fixed_fac_scale1", "fixed_fac_scale2"))
    return int(run_card["dynamical_scale_choice"]) == -1 and not fixed


def run_in_process(
    cmd: Any, settings: MadnisSettings, run_settings: RunSettings, header: MadEventHeader, seed: int, prebuilt: bool
) -> RunResult:
    """``run_mode = 0``: every P-dir in this process, one after the other."""
    from ..run.orchestrate import run_processes
    from ..run.train import SamplerReuseError

    sources = [process_source(Path(pdir), settings, seed, prebuilt) for pdir in cmd.get_Pdir()]
    try:
        return run_processes(sources, run_settings, header, lhe_init(cmd.run_card), log=log_progress)
    except SamplerReuseError as error:
        raise cmd.InvalidCmd(f"madnis_reuse = True: {error}") from None
    finally:
        for source in sources:
            source.integrand.library.close()


def log_progress(text: str) -> None:
    """Orchestration output to MadEvent's log, except its results summary (MadEvent prints its own)."""
    if text.strip() and "=== Results Summary" not in text:
        logger.info(text)


def process_source(pdir: Path, settings: MadnisSettings, seed: int, prebuilt: bool = False) -> ProcessSource:
    """Build (or reuse; ``prebuilt``: load as it is) the P-dir's bridge library, wrapped as an orchestration
    source."""
    import fortran_bridge

    from ..bridge_integrand import BridgeIntegrand

    library = fortran_bridge.ProcessLibrary(
        pdir,
        seed=seed,
        workers=settings.fixed_workers() or 1,
        library=fortran_bridge.built_library(pdir) if prebuilt else None,
        draws=fortran_bridge.Draws(settings.draw_scale_channel, settings.draw_subprocess),
    )
    integrand = BridgeIntegrand(library)
    return ProcessSource(
        name=pdir.name,
        integrand=integrand,
        event_records=integrand.event_records,
        lprup=int(pdir.name[1:].split("_")[0]),
        channel_names=[f"G{c.config}" for c in library.info.channels],
        record_evaluations=library.info.record_evaluations,
    )


def lhe_init(run_card: Any) -> LHEInit:
    """Beams and PDF ids of the <init> block as MadEvent writes them (processes filled by the orchestration)."""
    beams = {1: 2212, -1: -2212, 2: 2212, -2: -2212}
    pdf = int(run_card.get_lhapdf_id())
    return LHEInit(
        processes=[],
        beam_ids=(beams.get(int(run_card["lpp1"]), 0), beams.get(int(run_card["lpp2"]), 0)),
        beam_energies=(float(run_card["ebeam1"]), float(run_card["ebeam2"])),
        pdf_set=(pdf, pdf) if int(run_card["lpp1"]) else (0, 0),
    )


class MadEventHeader:
    """The LHE header as MadEvent writes it, made when the cross section is known (``Banner`` protocol)."""

    def __init__(self, cmd: Any, module: ModuleType, seed: int):
        self.cmd, self.module, self.seed = cmd, module, seed

    def text(self, n_events: int, integrated_weight: float) -> str:
        return madevent_banner(self.cmd, self.module, integrated_weight, n_events, self.seed)


def madnis_run_settings(cmd: Any, settings: MadnisSettings, seed: int) -> RunSettings:
    """What the orchestration runs: the card's settings, samplers in DIR/madnis, events in Events/RUN."""
    me_dir = Path(cmd.me_dir)
    return RunSettings(
        nevents=int(cmd.run_card["nevents"]),
        output_dir=me_dir / "madnis",
        training=settings.training_config(seed=seed),
        integration_points=settings.integration_points,
        precision=settings.fixed_precision(),
        events_file=str(me_dir / "Events" / cmd.run_name / "unweighted_events.lhe.gz"),
        run_name=cmd.run_name,
        tag=cmd.run_card["run_tag"],
        reuse=settings.reuse,
    )


def checked_settings(cmd: Any) -> MadnisSettings:
    """The madnis entries, gfortran, MG5aMC version, nevents and writable output checked before anything
    compiles (one-line errors)."""
    try:
        settings = MadnisSettings.from_card(cmd.run_card)
    except ValueError as error:
        raise cmd.InvalidCmd(str(error)) from None
    compiler = cmd.options.get("fortran_compiler") or "gfortran"
    if shutil.which(compiler) is None:
        raise cmd.InvalidCmd(f"madnis = True needs a Fortran compiler: {compiler} not found on PATH")
    version = mg5_version_of(Path(cmd.me_dir))
    if version is not None and not mg5_version_supported(version):
        raise cmd.InvalidCmd(
            f"madnis = True: this directory was written by MG5aMC {'.'.join(map(str, version))}, "
            f"madnis-mg5 supports 3.5.x"
        )
    try:
        check_run(madnis_run_settings(cmd, settings, seed=0))
    except RunCheckError as error:
        raise cmd.InvalidCmd(f"MadNIS: {error}") from None
    return settings


def mg5_version_of(me_dir: Path) -> tuple[int, ...] | None:
    """MG5aMC version that wrote ``me_dir`` (MGMEVersion.txt), None if unknown."""
    path = me_dir / "MGMEVersion.txt"
    if not path.exists():
        return None
    text = path.read_text().strip()
    parts = [p for p in text.split(".") if p.isdigit()]
    return tuple(int(p) for p in parts) if parts else None


def madevent_banner(cmd: Any, module: ModuleType, sigma: float, n_events: int, seed: int) -> str:
    """MadEvent's banner text (<MGVersion>, proc/run/param cards, <MGGenerationInfo>) for this run."""
    banner = module.banner_mod.recover_banner(cmd.results, "parton")
    banner.load_basic(cmd.me_dir)
    banner.add_generation_info(sigma, n_events)
    banner.change_seed(seed)
    cmd.banner = banner
    tag = cmd.run_card["run_tag"]
    run_dir = Path(cmd.me_dir) / "Events" / cmd.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    banner.write(str(run_dir / f"{cmd.run_name}_{tag}_banner.txt"))
    return banner_header(banner)


def banner_header(banner: Any) -> str:
    """The ``<header>...</header>`` text of a MadEvent banner object."""
    import io

    out = io.StringIO()
    banner.write(out, close_tag=False, exclude=["init"])
    text = out.getvalue()
    start = text.index("<header>")
    return text[start : text.index("</header>") + len("</header>")] + "\n"


def publish(cmd: Any, module: ModuleType, run: Any, plots: list[str]) -> None:
    """Cross section into MadEvent's results (results.dat, HTML page, crossx.html) and the shell summary."""
    from ..run.orchestrate import channel_names

    sum_html = module.sum_html
    total = sum_html.Combine_results(cmd.run_name)
    processes: dict[str, Any] = {}  # the parts of a P-dir's channels (channel_part) under their P-dir
    for source in run.sources:
        p_comb = processes.get(source.source.process_name)
        if p_comb is None:
            p_comb = processes[source.source.process_name] = sum_html.Combine_results(source.source.process_name)
        for c, name in zip(source.result.channels, channel_names(source)):
            leaf = sum_html.Combine_results(name)
            leaf.xsec, leaf.axsec, leaf.xerru = c.integral, abs(c.integral), c.error
            leaf.nevents = c.n_points
            leaf.nunwgt = round(source.n_events * c.fraction)
            leaf.luminosity = leaf.nunwgt / c.integral if c.integral > 0 else 0.0
            p_comb.append(leaf)
    for p_comb in processes.values():
        p_comb.compute_values()
        total.append(p_comb)
    total.compute_values()
    me_dir = Path(cmd.me_dir)
    total.write_results_dat(str(me_dir / "SubProcesses" / "results.dat"))
    html_dir = me_dir / "HTML" / cmd.run_name
    html_dir.mkdir(parents=True, exist_ok=True)
    p_text = "".join(p.get_html(cmd.run_name, cmd.results.unit, cmd.me_dir) for p in total)
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>\n' for name in plots)
    (html_dir / "results.html").write_text(
        sum_html.results_header
        + "%s <dl>%s </dl>\n<h3>MadNIS</h3>\n%s</body>"
        % (total.get_html(cmd.run_name, cmd.results.unit, cmd.me_dir), p_text, images)
    )
    cmd.results.add_detail("cross", total.xsec)
    cmd.results.add_detail("error", total.xerru)
    cmd.results.add_detail("nb_event", run.nevents)
    cmd.to_store.append("event")
    cmd.update_status("MadNIS: events written", level="parton")
    cmd.print_results_in_shell(cmd.results.current)
    cmd.gen_card_html()
    cmd.update_status("End Parton", level="parton", makehtml=True)


def _madevent_class(cmd: Any) -> type:
    """The MadEventCmd class in ``cmd``'s hierarchy (where ``run_generate_events`` is defined)."""
    for klass in type(cmd).__mro__:
        if "run_generate_events" in klass.__dict__ and klass.__name__ == "MadEventCmd":
            return klass
    raise TypeError(f"{type(cmd).__name__} is not a MadEvent command")
