"""``bin/gridrun`` of a MadNIS gridpack: NEVENTS events with SEED from the packed samplers, no training, no compiling.

As MadEvent's own gridrun (``GridPackCmd``, which this subclasses), in the unpacked ``madevent/`` directory: run name
``GridRun_SEED``, events in ``Events/GridRun_SEED/unweighted_events.lhe.gz`` (``run.sh`` moves them to
``./events.lhe.gz``), the granularity argument accepted and unused (MadNIS draws every event from the sampler). The
samplers of ``madnis/`` are re-used (a missing one stops the run: a gridpack never trains), the P-dirs' bridge
libraries are loaded as packed (never rebuilt, whatever the paths or compiler here), and MadNIS integrates and
unweights with SEED: sigma from this run's own points, other seeds give other events. The cards stay as packed
(``nevents`` is set in memory only).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import logging.config
import sys
from pathlib import Path
from typing import Any

from ..run import check_run, saved_sampler_path
from ..settings import MadnisSettings
from .madevent_run import generate_events, madnis_run_settings

logger = logging.getLogger("madevent.madnis")

USAGE = "usage: ./run.sh NEVENTS SEED (madevent/bin/gridrun NEVENTS SEED [GRANULARITY])"


def main(script: str, args: list[str]) -> None:
    """Entry of ``madevent/bin/gridrun`` (path ``script``) with run.sh's arguments; errors end in one line."""
    if len(args) not in (2, 3) or not all(a.lstrip("-").isdigit() for a in args):
        sys.exit(USAGE)
    nevents, seed = int(args[0]), int(args[1])
    me_dir = Path(script).resolve().parents[1]
    sys.path.insert(0, str(me_dir / "bin"))
    importlib.import_module("internal.coloring_logging")  # the ColorFormatter MadEvent's logging config names
    logging.config.fileConfig(me_dir / "bin" / "internal" / "me5_logging.conf", disable_existing_loggers=False)
    module = importlib.import_module("internal.madevent_interface")  # the gridpack's MadEvent, madnis hook included
    from fortran_bridge import BuildError

    try:
        madnis_gridpack_cmd(module.GridPackCmd)(me_dir=str(me_dir), nb_event=nevents, seed=seed)
    except (module.GridPackCmd.InvalidCmd, BuildError) as error:
        sys.exit(f"gridrun: {error}")
    finally:
        (me_dir / "RunWeb").unlink(missing_ok=True)  # MadEvent's lock, as stock gridrun removes it


def madnis_gridpack_cmd(gridpack_cmd: type) -> type:
    """MadEvent's ``GridPackCmd`` class with its ``launch`` (refine on the packed grids) replaced by MadNIS's."""

    class MadNISGridPackCmd(gridpack_cmd):
        def launch(self, nb_event: int, seed: int) -> None:
            self.set_run_name(f"GridRun_{seed}")
            generate_gridpack_events(self, int(nb_event), int(seed))

    return MadNISGridPackCmd


def generate_gridpack_events(cmd: Any, nevents: int, seed: int) -> None:
    """``nevents`` events seeded ``seed`` from the gridpack's samplers and compiled libraries."""
    cmd.run_card["nevents"] = nevents
    try:
        settings = dataclasses.replace(MadnisSettings.from_card(cmd.run_card), reuse=True)
        check_run(madnis_run_settings(cmd, settings, seed))
    except ValueError as error:  # an invalid entry, or RunCheckError
        raise cmd.InvalidCmd(f"MadNIS gridpack: {error}") from None
    samplers = Path(cmd.me_dir) / "madnis"
    missing = [p.name for p in map(Path, cmd.get_Pdir()) if not saved_sampler_path(samplers, p.name).is_file()]
    if missing:
        raise cmd.InvalidCmd(f"MadNIS gridpack: no trained sampler for {', '.join(missing)} in {samplers}")
    logger.info(
        "MadNIS gridpack: %d events with seed %d from the trained samplers in %s (no training, no compilation)",
        nevents,
        seed,
        samplers,
    )
    generate_events(cmd, settings, seed, prebuilt=True)
