"""Jobs started without Python's and torch's import time: a server that has the job code imported forks each job.

Why: a job run as ``python -m madnis_plugin.run.job`` spends ~1.6 s importing torch and the plugin before any
work (measured on the 2-core machine), paid by every job on a core's critical path (``p p > t t~ j``: three
training jobs on two cores, W+2j: two training and three generation jobs). On a multicore launch the parent
binds the server's socket early and forks the server itself once it has imported the job code (:class:`JobServer`):
the server then imports nothing, where a server started as ``python -m`` imported torch and the job code a second
time while the launch did, both on the CPU that MadEvent's Source compilation needs (``g g > t t~ g``: Source phase
3.1-3.2 s instead of 3.7 s). A job's script asks the server to run the job (:func:`client`, standard library only) and
the server forks a child that runs it exactly as ``python -m`` would (same function, same directory, output
appended to the job's log). MG5aMC's multicore pool still decides when each job starts and sees it end. Where no
server answers (a cluster node, a server that died) the script runs the job itself.

The server is one thread (``selectors`` with SIGCHLD as a wake-up), never touches torch before forking (a
forked child then starts its own thread pools), kills a job whose client went away (MG5aMC stopping its jobs,
Ctrl-C) and every job still running when it is stopped or its parent is gone.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

TARGET = "madnis_plugin.run.job:run"  # the function a job runs (with its directory), as ``python -m`` runs it
ADDRESS_NAME = "jobs.sock"
STARTED = b"started\n"  # the server's first answer: the job runs (then its exit status, one line)
FORKED = "forked by the job server"  # the first line a forked job writes to its log
NOT_TAKEN = 3  # the client's exit status when no server took the job: the job script then runs it itself


def _kill(pid: int) -> None:
    """Stop job ``pid`` and what it started (its bridge workers: the child leads its own process group)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _exit_after(work: Callable[[], None]) -> NoReturn:
    """In a forked child: run ``work``, print its traceback if it fails, flush, and leave with ``os._exit`` (0, or 1
    on failure): never back into the parent's code, and no interpreter teardown of the state it inherited."""
    code = 1
    try:
        work()
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _child(conn: socket.socket, job_dir: Path, job_log: Path, target: str, closing: list[int]) -> NoReturn:
    """In the forked child: run the job as ``python -m madnis_plugin.run.job JOB_DIR`` would; never returns."""

    def run_job() -> None:
        os.setpgid(0, 0)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in closing:
            os.close(fd)
        conn.close()
        os.chdir(job_dir)
        log = os.open(job_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        print(FORKED, flush=True)
        module, function = target.split(":")
        getattr(importlib.import_module(module), function)(job_dir)

    _exit_after(run_job)


def serve(listener_fd: int, target: str = TARGET) -> None:
    """Accept jobs (a directory and a log, a line each) on the listening Unix socket ``listener_fd`` and run each
    in a forked child; tell its client STARTED when it is forked and its exit status when it ends. Returns when
    stopped (SIGTERM) or when its parent is gone."""
    listener = socket.socket(fileno=listener_fd)
    module = target.split(":")[0]
    importlib.import_module(module)  # what every job would import: once, here (clients wait in the backlog)
    parent = os.getppid()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "listener")
    selector.register(wake_read, selectors.EVENT_READ, "wake")
    jobs: dict[int, socket.socket] = {}  # pid -> the client waiting for it
    try:
        while not stopping and os.getppid() == parent:
            for key, _ in selector.select(timeout=1.0):
                if key.data == "listener":
                    conn, _ = listener.accept()
                    request = conn.makefile("r")
                    job_dir, job_log = (Path(request.readline().rstrip("\n")) for _ in range(2))
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        others = [c.fileno() for c in jobs.values()]
                        _child(conn, job_dir, job_log, target, [listener.fileno(), wake_read, wake_write, *others])
                    jobs[pid] = conn
                    conn.sendall(STARTED)
                    selector.register(conn, selectors.EVENT_READ, pid)
                elif key.data == "wake":
                    while True:
                        try:
                            if not os.read(wake_read, 512):
                                break
                        except BlockingIOError:
                            break
                else:  # a client went away (or wrote more): its job is no longer wanted
                    pid = key.data
                    if not key.fileobj.recv(64):
                        _kill(pid)
            _reap(jobs, selector)
    finally:
        for pid in list(jobs):
            _kill(pid)
        _reap(jobs, selector)
        listener.close()


def _reap(jobs: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """Answer the clients of the jobs that ended with their exit status."""
    for pid in list(jobs):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            continue
        conn = jobs.pop(pid)
        selector.unregister(conn)
        try:
            conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
            pass
        conn.close()


def client(address: str, job_dir: str, job_log: str) -> int:
    """Run the job ``job_dir`` (its output appended to ``job_log``) in the server at ``address`` and wait for it:
    0 when the server ran it (whatever became of it: its ``result.json`` says whether it succeeded), NOT_TAKEN
    when no server took it (none listening, or it died before forking the job). Killing the client makes the server
    kill the job."""
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(address)
        conn.sendall(f"{job_dir}\n{job_log}\n".encode())
        answers = conn.makefile("rb")
        if answers.readline() != STARTED:
            return NOT_TAKEN
    except OSError:
        return NOT_TAKEN
    try:
        answers.readline()  # the job's exit status when it ends (nothing if the server was stopped)
    except OSError:
        pass
    return 0


def client_script() -> str:
    """This file, which a job script runs with ``python -S`` as the client."""
    return __file__


class JobServer:
    """The server as a context: its socket is bound on entry (clients queue from then on), the server forked from
    this process by :meth:`start` (which must have imported what the jobs need by then, ``target``'s module
    included: the server imports it only if not), stopped on exit with every job it still runs. ``address`` is
    what a job script passes to :func:`client`; ``env`` is the server's and its jobs' environment."""

    def __init__(self, env: dict[str, str], log: Path, target: str = TARGET):
        self.env, self.log, self.target = env, log, target
        self.directory = Path(tempfile.mkdtemp(prefix="madnis-jobs-"))  # short: Unix socket paths are limited
        self.address = str(self.directory / ADDRESS_NAME)
        self.listener: socket.socket | None = None
        self.pid: int | None = None

    def __enter__(self) -> JobServer:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(64)
        return self

    def start(self) -> None:
        """Fork the server. Afterwards it holds the only copy of the socket, so a server that died refuses
        connections (clients then run the job)."""
        assert self.listener is not None and self.pid is None, "start once, inside the context"
        sys.stdout.flush()
        sys.stderr.flush()
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        pid = os.fork()
        if pid == 0:  # serves until stopped; its jobs are reaped then and nothing is left to write
            listener_fd = self.listener.fileno()

            def run_server() -> None:
                os.setsid()  # Ctrl-C in the terminal reaches the launch, which stops the server
                _as_fresh_process(self.env, log, listener_fd)
                serve(listener_fd, self.target)

            _exit_after(run_server)
        os.close(log)
        self.listener.close()
        self.pid = pid

    def __exit__(self, *exc: object) -> None:
        if self.pid is not None and not _waited(self.pid, timeout=0.0):  # not yet ended (and reaped)
            os.kill(self.pid, signal.SIGTERM)
            if not _waited(self.pid, timeout=10.0):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        if self.listener is not None:
            self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _as_fresh_process(env: dict[str, str], log: int, listener_fd: int) -> None:
    """In the forked server: what a server started by ``python -m`` would have: ``env`` as its environment (its
    jobs' subprocesses get it), no standard input, output to ``log`` (``sys.stdout`` and ``sys.stderr`` too), no
    file of the launch's open but the listener (a pipe end held here would keep a reader of the launch's waiting),
    no logging handler of the launch's (a job's log records go to its own output, as in a fresh interpreter).

    The launch's Python objects stay as they are (frozen out of the garbage collector; the streams and handlers
    replaced here kept), so that no file object of the launch's is finalized here and closes a descriptor number the
    server has since reused for a job's connection."""
    gc.freeze()
    os.environ.clear()
    os.environ.update(env)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, listener_fd)
    os.closerange(listener_fd + 1, os.sysconf("SC_OPEN_MAX"))
    _LAUNCH_OBJECTS.extend([sys.stdout, sys.stderr])  # the launch's may be wrappers (pytest's, MG5aMC's)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    for logger in [logging.root, *logging.root.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            _LAUNCH_OBJECTS.extend(logger.handlers)
            logger.handlers.clear()
    logging.root.setLevel(logging.WARNING)


_LAUNCH_OBJECTS: list[object] = []  # the launch's streams and logging handlers, kept alive in the server (above)


def _waited(pid: int, timeout: float) -> bool:
    """Whether child ``pid`` ended within ``timeout`` seconds (reaping it; a child reaped before counts)."""
    end = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:  # reaped already
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(client(*sys.argv[1:]))
