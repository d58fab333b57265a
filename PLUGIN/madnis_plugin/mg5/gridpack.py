"""``gridpack = True`` with ``madnis = True``: MadEvent's gridpack tarball, carrying the trained samplers.

Stock MadEvent (``create_gridpack``, ``bin/internal/make_gridpack``) writes ``DIR/RUN_gridpack.tar.gz``: a top-level
``run.sh`` and ``madevent/`` (Cards, HTML, SubProcesses, bin, lib, Source, an empty Events, ...) whose ``bin/`` holds
``bin/internal/Gridpack/*``; ``./run.sh NEVENTS SEED`` calls ``madevent/bin/gridrun``, which writes
``madevent/Events/GridRun_SEED/unweighted_events.lhe.gz``, and moves it to ``./events.lhe.gz``. The MadNIS gridpack
has the same name, place and layout (stock ``run.sh`` unchanged) plus what generating needs without training or
compiling: ``madevent/madnis/`` (the trained samplers) and every P-dir's ``madnis_build/`` (its bridge library).
Only ``bin/gridrun`` is MadNIS's: it runs :mod:`.gridrun` in the ``python3`` on PATH, where madnis-mg5 (with torch)
must be installed; the gridpack vendors neither.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from pathlib import Path
from typing import Any

from ..run import saved_sampler_path

logger = logging.getLogger("madevent.madnis")

# stock make_gridpack's FILES but Events (packed empty); of madnis/ only the trained samplers are packed
PACKED = (
    "Cards",
    "HTML",
    "SubProcesses",
    "bin",
    "lib",
    "Source",
    "index.html",
    "README",
    "TemplateVersion.txt",
    "MGMEVersion.txt",
)

GRIDRUN = '''#!/usr/bin/env python3
"""MadNIS gridpack run (written by madnis-mg5): gridrun NEVENTS SEED [GRANULARITY], called by ../../run.sh."""
import sys

try:
    from madnis_plugin.mg5.gridrun import main
except ImportError as error:
    sys.exit(f"this MadNIS gridpack needs madnis-mg5 installed in {sys.executable} (pip install madnis-mg5): {error}")
main(__file__, sys.argv[1:])
'''


def create_gridpack(cmd: Any) -> Path:
    """Pack the MadEvent directory of ``cmd`` after its MadNIS run into ``DIR/RUN_gridpack.tar.gz``."""
    me_dir = Path(cmd.me_dir)
    cmd.update_status("Creating gridpack", level="parton")
    path = write_gridpack(me_dir, me_dir / f"{cmd.run_name}_gridpack.tar.gz")
    logger.info("MadNIS gridpack: %s (unpack it anywhere, then ./run.sh NEVENTS SEED)", path)
    cmd.update_status("gridpack created", level="gridpack")
    return path


def write_gridpack(me_dir: Path, path: Path) -> Path:
    """Write the gridpack of ``me_dir`` to ``path`` (via a temporary file: never half a tarball at ``path``)."""
    gridpack_bin = me_dir / "bin" / "internal" / "Gridpack"
    partial = path.with_name(path.name + ".part")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(gridpack_bin / "run.sh", arcname="run.sh")
        for name in PACKED:
            if (me_dir / name).exists():
                tar.add(me_dir / name, arcname=f"madevent/{name}", filter=_without_locks)
        for pdir in (me_dir / "SubProcesses" / "subproc.mg").read_text().split():
            sampler = saved_sampler_path(me_dir / "madnis", pdir)
            tar.add(sampler, arcname=f"madevent/madnis/{sampler.name}")
        events = tarfile.TarInfo("madevent/Events")
        events.type, events.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(events)
        for script in sorted(gridpack_bin.iterdir()):
            if script.name != "gridrun":
                tar.add(script, arcname=f"madevent/bin/{script.name}")
        gridrun = tarfile.TarInfo("madevent/bin/gridrun")
        gridrun.size, gridrun.mode = len(GRIDRUN.encode()), 0o755
        tar.addfile(gridrun, io.BytesIO(GRIDRUN.encode()))
    os.replace(partial, path)
    return path


def _without_locks(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Leave out the bridge build's lock file."""
    return None if Path(info.name).name == ".madnis_build.lock" else info
