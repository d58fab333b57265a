"""Worker processes that each load one bridge library with cffi: crash isolation and sharding.

A Fortran STOP, abort or segfault ends only a forked child of the worker, which reports it and
forks a fresh child from its initialised state (:class:`WorkerCrash` in the parent, with the last
output; if the worker itself dies, the parent starts a new one). ``WorkerPool.map``
then isolates the crashing points by bisection on the restarted worker: the other points keep
their results, the points that crash on their own are reported as crashed, and the batch fails
with :class:`BridgeError` only when more points crash than the caller tolerates.
:class:`Worker` runs ``serve(FD, LIBRARY, RUNDIR, SEED, SCALE_CHANNEL, SUBPROCESS)`` in a fresh interpreter; the Fortran's
own printing goes to a file of its own, ``RUNDIR/worker<k>.<random>.log`` (the jobs of two channel parts of one P-dir
serve it from the same RUNDIR at once, and a crash reports its worker's output only), removed when the worker is
closed normally.
"""

from __future__ import annotations

import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from .records import EVALUATE_INPUTS, EVALUATE_OUTPUTS, EVENT_RECORD, arrays, shape

HEADER = Path(__file__).resolve().parent / "madnis_bridge.h"
LOG_LIMIT = 10 * 2**20  # bytes of worker output kept
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # lets the worker import fortran_bridge


@dataclass(frozen=True)
class Draws:
    """What the library may draw at each point instead of summing (``madnis_allow_scale_draw``,
    ``madnis_allow_subprocess_draw``): with MadEvent's channel-dependent scale, each subprocess's scale channel from
    alpha (the library refuses where that would change the cross section); one subprocess and mirror with probability
    proportional to its parton luminosity, as MadEvent's grouped subprocesses (one matrix element a point instead of
    one per subprocess and mirror)."""

    scale_channel: bool = True
    subprocess: bool = False


class BridgeError(RuntimeError):
    """A bridge library failed (worker crashed, Fortran STOP, bad return code)."""


class WorkerCrash(BridgeError):
    """The worker process died (Fortran STOP, abort, signal); ``output`` is its last output."""

    def __init__(self, message: str, output: str):
        super().__init__(message)
        self.output = output


@dataclass
class Crashes:
    """Points of one ``WorkerPool.map`` call that crashed the worker on their own."""

    index: list[int] = field(default_factory=list)  # positions in the batch
    messages: list[str] = field(default_factory=list)  # the worker's last output, per crash


# ----------------------------------------------------------------------------- child side
def load_library(path: str):
    """``(ffi, lib)`` for a library implementing madnis_bridge.h."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef("\n".join(line for line in HEADER.read_text().splitlines() if not line.startswith("#")))
    return ffi, ffi.dlopen(path)


class SharedBatch:
    """Input and output arrays of ``evaluate`` for up to ``capacity`` points in one file mapped by
    both the parent and its worker, so batches never pass through the socket."""

    def __init__(self, path: Path, capacity: int, ndim: int, nexternal: int, n_channels: int, create: bool):
        dims = {"ndim": ndim, "nexternal": nexternal, "n_channels": n_channels}
        layout = {f.name: (f.dtype, shape(f, capacity, dims)) for f in EVALUATE_INPUTS + EVALUATE_OUTPUTS}
        sizes = {k: 8 * -(-int(np.prod(s, dtype=int)) * np.dtype(t).itemsize // 8) for k, (t, s) in layout.items()}
        self.path, self.capacity = path, capacity
        if create:
            with open(path, "wb") as handle:
                handle.truncate(sum(sizes.values()))
        with open(path, "r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), sum(sizes.values()))
        self.arrays, offset = {}, 0
        for key, (dtype, full_shape) in layout.items():
            self.arrays[key] = np.ndarray(full_shape, dtype, buffer=self._map, offset=offset)
            offset += sizes[key]

    def close(self) -> None:
        self.arrays = {}
        self._map.close()


class _Server:
    """Calls the C ABI for the parent's requests."""

    def __init__(self, library: str, rundir: str, seed: int, draws: Draws):
        self.ffi, self.lib = load_library(library)
        if self.lib.madnis_init(rundir.encode(), seed) != 0:
            raise BridgeError(f"madnis_init({rundir!r}) failed")
        self.lib.madnis_allow_scale_draw(int(draws.scale_channel))
        if draws.subprocess:  # asked only then: a library built before the draw (a gridpack's) still sums
            try:
                allow_subprocess_draw = self.lib.madnis_allow_subprocess_draw
            except AttributeError:
                raise BridgeError(
                    f"{library} cannot draw a subprocess per point (built by an older madnis-mg5, e.g. in a gridpack):"
                    " set madnis_draw_subprocess = False in its run_card, or rebuild it"
                ) from None
            allow_subprocess_draw(1)
        ints = [self.ffi.new("int *") for _ in range(6)]
        ebeams = np.zeros(2)
        self.lib.madnis_info(*ints[:5], self._ptr(ebeams), ints[5])
        self.ndim, self.n_channels, self.nexternal, self.ninitial, n_sub, scale_dep = (i[0] for i in ints)
        config = np.zeros(self.n_channels, np.int32)
        group = np.zeros(self.n_channels, np.int32)
        self.lib.madnis_channels(self._ptr(config), self._ptr(group))
        pdg = np.zeros((n_sub, self.nexternal), np.int32)
        mirror = np.zeros(n_sub, np.int32)
        self.lib.madnis_subprocesses(self._ptr(pdg), self._ptr(mirror))
        self.maxnup = self.lib.madnis_max_nup()
        self.info = dict(
            ndim=self.ndim,
            n_channels=self.n_channels,
            nexternal=self.nexternal,
            ninitial=self.ninitial,
            config=config,
            symmetry_group=group,
            pdg=pdg,
            mirror=mirror.astype(bool),
            beam_energies=(float(ebeams[0]), float(ebeams[1])),
            scale_depends_on_channel=bool(scale_dep),
            record_evaluations=int(self.lib.madnis_record_evaluations()),
            maxnup=self.maxnup,
        )
        self.batch: SharedBatch | None = None

    def _ptr(self, array: np.ndarray):
        kind = "int[]" if array.dtype == np.int32 else "double[]"
        return self.ffi.from_buffer(kind, array)

    def evaluate(self, path: str, capacity: int, n: int) -> float:
        """Evaluate the first n points of the shared batch at ``path``; the Fortran's seconds."""
        if self.batch is None or (str(self.batch.path), self.batch.capacity) != (path, capacity):
            if self.batch is not None:
                self.batch.close()
            self.batch = SharedBatch(Path(path), capacity, self.ndim, self.nexternal, self.n_channels, create=False)
        a = self.batch.arrays
        start = time.perf_counter()
        rc = self.lib.madnis_evaluate(n, *(self._ptr(a[f.name][:n]) for f in EVALUATE_INPUTS + EVALUATE_OUTPUTS))
        seconds = time.perf_counter() - start
        if rc != 0:
            raise BridgeError(f"madnis_evaluate returned {rc}")
        return seconds

    def event_record(self, channel: np.ndarray, r: np.ndarray, u: np.ndarray, seed: int) -> dict[str, Any]:
        out = arrays(EVENT_RECORD, len(channel), {"maxnup": self.maxnup})
        rc = self.lib.madnis_event_record(
            len(channel),
            self._ptr(np.ascontiguousarray(channel, np.int32)),
            self._ptr(np.ascontiguousarray(r)),
            self._ptr(np.ascontiguousarray(u)),
            seed,
            self.maxnup,
            *(self._ptr(out[f.name]) for f in EVENT_RECORD),
        )
        if rc != 0:
            raise BridgeError(f"madnis_event_record returned {rc}")
        return out


def serve(fd: str, library: str, rundir: str, seed: str, scale_channel: str, subprocess: str) -> None:
    """Worker process main loop: load and initialise ``library``, then fork a child that answers
    the parent on socket ``fd``; when a child dies (Fortran STOP, signal) report ("crashed", exit
    code) and fork a fresh one from the initialised state, so a crash costs a fork, not a start."""
    conn = Connection(int(fd))
    try:
        server = _Server(library, rundir, int(seed), Draws(scale_channel == "1", subprocess == "1"))
    except Exception as exc:  # report, then exit: the parent raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ok", server.info))
    while True:
        done_read, done_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(done_read)
            _answer(conn, server)
            os.write(done_write, b"x")  # a deliberate end, not a crash
            os._exit(0)
        os.close(done_write)
        _, wait_status = os.waitpid(pid, 0)
        deliberate = os.read(done_read, 1) == b"x"
        os.close(done_read)
        if deliberate:
            return
        conn.send(("crashed", os.waitstatus_to_exitcode(wait_status)))


def _answer(conn: Connection, server: _Server) -> None:
    """Answer the parent's requests until it closes."""
    while True:
        try:
            command, args = conn.recv()
        except EOFError:
            return
        if command == "close":
            return
        try:
            conn.send(("ok", getattr(server, command)(*args)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


# ---------------------------------------------------------------------------- parent side
class Worker:
    """One worker process (fork server) serving one library; started anew if it dies itself."""

    def __init__(self, library: Path, rundir: Path, seed: int, index: int, name: str, draws: Draws):
        self.library, self.rundir, self.seed, self.index, self.name = library, rundir, seed, index, name
        self.draws = draws
        handle, log = tempfile.mkstemp(prefix=f"worker{index}.", suffix=".log", dir=rundir)  # its own: see above
        os.close(handle)
        self.log = Path(log)
        self.batch: SharedBatch | None = None
        self.pending: int | None = None
        self.info = self._start()

    def _start(self) -> dict[str, Any]:
        parent, child = socket.socketpair()
        self.log.write_bytes(b"")
        self.log_start = 0
        with open(self.log, "ab") as log:  # appending, so that the parent may truncate it
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from fortran_bridge.workers import serve; serve(*sys.argv[1:])",
                    str(child.fileno()),
                    str(self.library),
                    str(self.rundir),
                    str(self.seed),
                    str(int(self.draws.scale_channel)),
                    str(int(self.draws.subprocess)),
                ],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "OMP_NUM_THREADS": "1",
                    "GFORTRAN_UNBUFFERED_PRECONNECTED": "y",
                    "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")])),
                },
            )
        child.close()
        self.conn = Connection(os.dup(parent.fileno()))
        parent.close()
        return self.receive("initialising")

    def submit(self, command: str, *args: Any) -> None:
        """Start ``command``; ``evaluate(channel, r)`` goes through the shared batch."""
        self.pending = None
        if command != "evaluate":
            self.send(command, *args)
            return
        channel, r = args
        n = len(channel)
        if self.batch is None or self.batch.capacity < n:
            self._new_batch(max(n, 2 * self.batch.capacity if self.batch else n))
        self.batch.arrays["channel"][:n] = channel
        self.batch.arrays["r"][:n] = r
        self.pending = n
        self.send("evaluate", str(self.batch.path), self.batch.capacity, n)

    def collect(self, context: str) -> Any:
        """The result of the submitted command (evaluate: copies of the shared outputs)."""
        payload = self.receive(context)
        if self.pending is None:
            return payload
        self.batch.path.unlink(missing_ok=True)  # both sides have it mapped now
        out = {f.name: self.batch.arrays[f.name][: self.pending].copy() for f in EVALUATE_OUTPUTS}
        out["fortran_seconds"] = payload
        return out

    def _new_batch(self, capacity: int) -> None:
        if self.batch is not None:
            self.batch.close()
        shm = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else self.rundir
        handle, path = tempfile.mkstemp(prefix=f"madnis_{self.name}_", dir=shm)
        os.close(handle)
        self.batch = SharedBatch(
            Path(path), capacity, self.info["ndim"], self.info["nexternal"], self.info["n_channels"], create=True
        )

    def send(self, command: str, *args: Any) -> None:
        if self.log.stat().st_size > LOG_LIMIT:  # MadEvent prints at every channel set-up
            os.truncate(self.log, 0)
        self.log_start = self.log.stat().st_size  # a crash reports the output of its request only
        try:
            self.conn.send((command, args))
        except OSError:
            pass  # the worker died: receive() reports it

    def receive(self, context: str) -> Any:
        try:
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            raise WorkerCrash(*self._crash_message(context, self._exit_code())) from None
        if status == "crashed":  # the worker's child died; the worker has forked a fresh one
            raise WorkerCrash(*self._crash_message(context, payload))
        if status == "error":
            raise BridgeError(f"{self.name}: {payload} ({context})")
        return payload

    def _exit_code(self) -> int:
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def _crash_message(self, context: str, code: int) -> tuple[str, str]:
        if code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code} (Fortran STOP or exit)"
        with open(self.log, "rb") as log:
            log.seek(self.log_start)
            text = log.read().decode(errors="replace")
        tail = [line.strip() for line in text.splitlines() if line.strip()][-3:]
        output = " | ".join(tail) or "(none)"
        return f"{self.name}: bridge worker {how} while {context}; last output: {output}", output

    def restart(self) -> None:
        """After a crash: a fresh shared batch, and a fresh process unless its fork server lives."""
        self._close_batch()
        if self.proc.poll() is None:
            return
        self.conn.close()
        self.info = self._start()

    def _close_batch(self) -> None:
        if self.batch is not None:
            self.batch.path.unlink(missing_ok=True)
            self.batch.close()
            self.batch = None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("close")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.conn.close()
        self._close_batch()
        self.log.unlink(missing_ok=True)


class _Job:
    """One command's batch being re-run in parts on a worker after a crash; ``out`` (the shard's
    result, starting at batch position ``offset``) collects the parts that ran."""

    def __init__(
        self,
        worker: Worker,
        command: str,
        channel: np.ndarray,
        arrays: tuple,
        extra: tuple,
        offset: int,
        out: dict[str, Any],
        first_crash: WorkerCrash,
    ):
        self.worker, self.command, self.channel, self.arrays, self.extra = worker, command, channel, arrays, extra
        self.offset, self.out, self.first_crash, self.last_crash = offset, out, first_crash, first_crash

    def run(self, part: np.ndarray) -> bool:
        """Run the points at batch positions ``part``; False (worker restarted) if it crashed."""
        self.worker.submit(self.command, self.channel[part], *(a[part] for a in self.arrays), *self.extra)
        try:
            result = self.worker.collect(f"running {self.command} for {WorkerPool._channels(self.channel[part])}")
        except WorkerCrash as exc:
            self.worker.restart()
            self.last_crash = exc
            return False
        for key, value in result.items():
            if isinstance(value, np.ndarray):
                self.out[key][part - self.offset] = value
            else:
                self.out[key] += value
        return True


class WorkerPool:
    """``workers`` processes; a batch is split into contiguous shards, one per worker."""

    def __init__(self, library: Path, rundir: Path, seed: int, workers: int, name: str, draws: Draws):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.name = name
        self._start = lambda index: Worker(library, rundir, seed + index, index, name, draws)
        self.workers: list[Worker] = []
        try:
            self.grow(workers)
        except BaseException:
            self.close()
            raise

    def grow(self, workers: int) -> None:
        """Start workers until there are ``workers`` (none where there are as many already); the next batches
        are split over all of them."""
        for index in range(len(self.workers), workers):
            self.workers.append(self._start(index))

    @property
    def info(self) -> dict[str, Any]:
        return self.workers[0].info

    def map(
        self,
        command: str,
        channel: np.ndarray,
        *arrays: np.ndarray,
        extra: tuple = (),
        blank: Callable[[int], dict[str, Any]] | None = None,
        tolerate: int = 0,
    ) -> tuple[list[Any], Crashes]:
        """Run ``command(channel_shard, *array_shards, *extra)`` on all workers; results in order.

        Points that crash a worker are isolated by bisection on the restarted worker and get the
        values of ``blank(n)`` (n points' result as ``command`` returns it, numbers summed);
        BridgeError if more than ``tolerate`` points crash, or on any other failure.
        """
        bounds = np.linspace(0, len(channel), len(self.workers) + 1).astype(int)
        shards = [(w, np.arange(lo, hi)) for w, lo, hi in zip(self.workers, bounds[:-1], bounds[1:]) if hi > lo]
        for worker, part in shards:
            worker.submit(command, channel[part], *(a[part] for a in arrays), *extra)
        results, errors, crashed = [], [], []
        for worker, part in shards:
            try:
                results.append(worker.collect(f"running {command} for {self._channels(channel[part])}"))
            except WorkerCrash as exc:
                worker.restart()
                crashed.append((len(results), exc))
                results.append(None)
            except BridgeError as exc:
                errors.append(str(exc))
        if errors:
            raise BridgeError(errors[0])
        crashes = Crashes()
        if crashed and (blank is None or len(crashed) > tolerate):
            raise BridgeError(self._too_many(crashed[0][1], len(crashed), len(channel), tolerate))
        for k, exc in crashed:
            worker, part = shards[k]
            results[k] = blank(len(part))
            self._isolate(
                _Job(worker, command, channel, arrays, extra, part[0], results[k], exc), part, crashes, tolerate
            )
        return results, crashes

    def _isolate(self, job: _Job, part: np.ndarray, crashes: Crashes, tolerate: int) -> None:
        """Bisect ``part`` (batch positions that crashed together) until every point has run
        alone or in a group that did not crash; record the points that crash on their own."""
        stack = [(part, True)]  # (positions, known to crash together)
        while stack:
            part, crashing = stack.pop()
            if not crashing and job.run(part):
                continue
            if len(part) == 1:
                crashes.index.append(int(part[0]))
                crashes.messages.append(job.last_crash.output)
            at_least = len(crashes.index) + sum(known for _, known in stack) + (len(part) > 1)
            if at_least > tolerate:  # disjoint crashing groups: stop early, the batch fails anyway
                raise BridgeError(self._too_many(job.first_crash, at_least, len(job.channel), tolerate))
            if len(part) == 1:
                continue
            half = len(part) // 2
            if job.run(part[:half]):  # then the rest crashes: bisect it (a single point runs alone)
                stack.append((part[half:], len(part) - half > 1))
            else:
                stack += [(part[half:], False), (part[:half], True)]

    @staticmethod
    def _too_many(first: WorkerCrash, n_crashed: int, n: int, tolerate: int) -> str:
        return (
            f"{first}; {n_crashed} or more of {n} points crash the Fortran, more than the {tolerate} tolerated "
            f"(ProcessLibrary max_crash_fraction, max_crashes)"
        )

    @staticmethod
    def _channels(channel: np.ndarray) -> str:
        present = np.flatnonzero(np.bincount(channel))
        return f"channel(s) {present[:20].tolist()}" + (" ..." if len(present) > 20 else "")

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []
