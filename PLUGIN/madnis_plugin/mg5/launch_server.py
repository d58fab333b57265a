"""The job server of a multicore MadNIS launch: its socket bound when the launch begins, the server forked from the
launch once the launch has imported the job code (:mod:`..run.job_server`), so that torch is imported once.

Only the standard library and the light :mod:`..run.job_server` are imported here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..run.job_server import JobServer

MKL_FORK_SAFE = {"MKL_DISABLE_FAST_MM": "1"}
"""MKL's own memory manager off in a multicore launch, whose jobs are forked from it (through the job server): with it
on, a training job of a ``p p > e+ e-`` launch (``tests/test_plugin_mg5.py``, stop 47's CI) spun for 15 minutes at 100 %
CPU inside its first matrix product (``sgemm`` -> ``mkl_serv_allocate`` -> ``mm_account_ptr_by_tid``, from
``py-spy dump --native``): that allocator's per-thread bookkeeping is not safe across ``fork``. Off, MKL takes its
buffers from ``malloc``. Set before torch is imported in the launch and kept in the jobs' environment."""


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
def job_server(cmd: Any) -> Iterator[JobServer | None]:
    """A job server for a multicore launch (``run_mode = 2``; the caller starts it), None otherwise (cluster jobs
    run elsewhere)."""
    if cmd.cluster_mode != 2:
        yield None
        return
    log_path = Path(cmd.me_dir) / "madnis" / "jobs" / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(MKL_FORK_SAFE)  # before the launch imports torch (run_madnis)
    env = {**os.environ, "PYTHONPATH": python_path(), "OMP_NUM_THREADS": "1"}
    with JobServer(env, log_path) as server:
        yield server
