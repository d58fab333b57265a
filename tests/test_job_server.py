"""The job server (madnis_plugin.run.job_server): jobs forked from a process that imported their code once.

A job runs in a child of the server (not a new interpreter), in its own directory, with its output appended to its
log; a client that finds no server gets NOT_TAKEN (its job script then runs the job itself); a job whose client
is killed (MG5aMC stopping its jobs) and every job still running when the server stops are killed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from madnis_plugin.run import job_server
from madnis_plugin.run.job_server import FORKED, NOT_TAKEN, JobServer

TARGET = "job_server_target:run"
FIXTURE = Path(__file__).resolve().parent / "job_server_fixture"


def started(tmp_path: Path, monkeypatch) -> JobServer:
    """A server forked from this process, as the launch forks it, with the fixture's job importable; its
    environment marked."""
    monkeypatch.syspath_prepend(str(FIXTURE))
    return JobServer(dict(os.environ, MADNIS_SERVER_MARK="server env"), tmp_path / "server.log", TARGET)


@pytest.fixture
def server(tmp_path, monkeypatch):
    with started(tmp_path, monkeypatch) as running:
        running.start()
        yield running


def job(tmp_path: Path, name: str, *flags: str) -> Path:
    job_dir = tmp_path / name
    job_dir.mkdir()
    for flag in flags:
        (job_dir / flag).touch()
    return job_dir


def client(address: str, job_dir: Path) -> subprocess.Popen:
    """The client as a job script runs it: by its path, without site-packages."""
    script = [sys.executable, "-S", job_server.client_script(), address, str(job_dir)]
    return subprocess.Popen([*script, str(job_dir / "job.log")])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def wait_for(condition, timeout: float = 20.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_jobs_run_forked_from_the_server_in_their_directory(server, tmp_path):
    dirs = [job(tmp_path, "a"), job(tmp_path, "b"), job(tmp_path, "c", "fail")]
    clients = [client(server.address, d) for d in dirs]
    assert [c.wait(timeout=60) for c in clients] == [0, 0, 0]  # a failed job is still run: its result says so
    records = [json.loads((d / "ran.json").read_text()) for d in dirs]
    assert len({r["pid"] for r in records}) == 3
    assert {r["imported_in"] for r in records} == {server.pid}  # imported once, by the server
    assert all(r["pid"] != server.pid and r["pgid"] == r["pid"] for r in records)
    assert [r["cwd"] for r in records] == [str(d) for d in dirs]
    assert {r["mark"] for r in records} == {"server env"}  # the server's environment, not the launch's
    assert (dirs[0] / "job.log").read_text() == f"{FORKED}\njob output\n"
    assert "injected failure" in (dirs[2] / "job.log").read_text()


def test_the_server_keeps_no_file_of_the_launch_open(tmp_path, monkeypatch):
    """A pipe the launch had open when it forked the server reaches its end for the launch's reader once the launch
    closes it: the server holds no copy (it would keep MG5aMC waiting on a subprocess's output)."""
    read_end, write_end = os.pipe()
    with started(tmp_path, monkeypatch) as server:
        server.start()
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], 5.0)
        assert ready and os.read(read_end, 1) == b"", "the server keeps the pipe open"
    os.close(read_end)


def test_no_server_means_not_taken(tmp_path, server):
    assert client(str(tmp_path / "nothing.sock"), job(tmp_path, "a")).wait(timeout=30) == NOT_TAKEN
    os.kill(server.pid, signal.SIGKILL)  # a server that died: its socket refuses
    os.waitpid(server.pid, 0)
    assert client(server.address, job(tmp_path, "b")).wait(timeout=30) == NOT_TAKEN
    assert not (tmp_path / "b" / "ran.json").exists()


def test_a_job_whose_client_is_killed_is_killed(server, tmp_path):
    job_dir = job(tmp_path, "a", "sleep")
    waiting = client(server.address, job_dir)
    assert wait_for(lambda: (job_dir / "ran.json").exists())
    pid = json.loads((job_dir / "ran.json").read_text())["pid"]
    assert alive(pid)
    waiting.kill()
    assert wait_for(lambda: not alive(pid)), "the job outlived its client"


def test_stopping_the_server_kills_its_jobs(tmp_path, monkeypatch):
    with started(tmp_path, monkeypatch) as server:
        server.start()
        job_dir = job(tmp_path, "a", "sleep")
        waiting = client(server.address, job_dir)
        assert wait_for(lambda: (job_dir / "ran.json").exists())
        pid = json.loads((job_dir / "ran.json").read_text())["pid"]
    assert wait_for(lambda: not alive(pid)), "the job outlived the server"
    assert waiting.wait(timeout=30) == 0  # its job ran (and was stopped): the job script does not run it again
    assert not Path(server.address).parent.exists()
