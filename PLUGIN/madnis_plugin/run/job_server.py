"""Jobs started without Python's and torch's import time: a server that imported the job code forks each job.

Why: a job run as ``python -m madnis_plugin.run.job`` spends ~1.6 s importing torch and the plugin before any
work (measured on the 2-core machine), paid by every job on a core's critical path (``p p > t t~ j``: three
training jobs on two cores, W+2j: two training and three generation jobs). On a multicore launch the parent
starts this server once (:class:`JobServer`); a job's script asks it to run the job (:func:`client`, standard
library only) and the server forks a child that runs it exactly as ``python -m`` would (same function, same
directory, output appended to the job's log). MG5aMC's multicore pool still decides when each job starts and
sees it end. Where no server answers (a cluster node, a server that died) the script runs the job itself.

The server is one thread (``selectors`` with SIGCHLD as a wake-up), never touches torch before forking (a
forked child then starts its own thread pools), kills a job whose client went away (MG5aMC stopping its jobs,
Ctrl-C) and every job still running when it is stopped or its parent is gone.
"""

from __future__ import annotations

import importlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

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


def _child(conn: socket.socket, job_dir: Path, job_log: Path, target: str, closing: list[int]) -> None:
    """In the forked child: run the job as ``python -m madnis_plugin.run.job JOB_DIR`` would; never returns."""
    code = 1
    try:
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
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


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
    """The server as a context: started on entry (its imports overlap whatever the parent does next), stopped on
    exit with every job it still runs. ``address`` is what a job script passes to :func:`client`."""

    def __init__(self, env: dict[str, str], log: Path, target: str = TARGET):
        self.env, self.log, self.target = env, log, target
        self.directory = Path(tempfile.mkdtemp(prefix="madnis-jobs-"))  # short: Unix socket paths are limited
        self.address = str(self.directory / ADDRESS_NAME)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> JobServer:
        """Bind here, so that clients queue from now on while the server imports; the server holds the only
        copy of the socket afterwards, so a server that died refuses connections (clients then run the job)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener, open(self.log, "ab") as log:
            listener.bind(self.address)
            listener.listen(64)
            self.process = subprocess.Popen(
                [sys.executable, "-m", "madnis_plugin.run.job_server", "serve", str(listener.fileno()), self.target],
                env=self.env,
                pass_fds=(listener.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches the launch, which stops the server
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), *sys.argv[3:])
        # its jobs are reaped and nothing is left to write: skip the interpreter's teardown of torch (~0.3 s on the
        # launch's critical path, JobServer.__exit__ waits for this process)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    else:
        sys.exit(client(*sys.argv[2:]))
