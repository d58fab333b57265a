"""The job server of a multicore MadNIS launch, started before the launch imports torch.

Why first: the launch's own imports of torch and the run code (1-3 s on the 2-core machine; MadEvent runs under
``python -O``, whose bytecode is recompiled where no ``.opt-1.pyc`` may be written) run on one core, and the
server's imports (:mod:`..run.job_server`: it imports the job code once, then forks every job) then take the
other. Only the standard library and the light :mod:`..run.job_server` are imported here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..run.job_server import JobServer


def python_path() -> str:
    """Where a job's Python finds madnis_plugin (as loaded here), madnis and fortran_bridge (located, not imported)."""
    packages = [Path(__file__).parents[2]]
    for name in ("madnis", "fortran_bridge"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            packages.append(Path(spec.origin).parents[1])
    entries = [str(p) for p in packages] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(entries))


@contextlib.contextmanager
def job_server(cmd: Any) -> Iterator[str | None]:
    """The address of a job server for a multicore launch (``run_mode = 2``), None otherwise (cluster jobs run
    elsewhere)."""
    if cmd.cluster_mode != 2:
        yield None
        return
    log_path = Path(cmd.me_dir) / "madnis" / "jobs" / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": python_path(), "OMP_NUM_THREADS": "1"}
    with JobServer(env, log_path) as server:
        yield server.address
