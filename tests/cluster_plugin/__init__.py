"""An MG5aMC cluster plugin for the tests (``cluster_type = madnis_subprocess``): every job runs as a separate
subprocess in its own directory, as condor or slurm run them, and is polled like a batch job.

``MADNIS_TEST_FAIL = once:TEXT`` (or ``always:TEXT``) replaces the job whose directory contains TEXT by a
failing command at its first submission (or at every one), to exercise MadNIS's resubmission.
"""

import os
import subprocess

try:
    from madgraph.various import cluster
except ImportError:  # inside an output directory's bin/generate_events
    import internal.cluster as cluster

minimal_mg5amcnlo_version = (3, 5, 0)
maximal_mg5amcnlo_version = (3, 5, 1000)
latest_validated_version = (3, 5, 7)


class SubprocessCluster(cluster.Cluster):
    name = "madnis_subprocess"
    job_id = "$$"

    def __init__(self, *args, **opts):
        super().__init__(*args, **opts)
        self.options["cluster_status_update"] = (1, 1)  # poll every second
        self.procs = {}
        self.failed = set()

    def submit(self, prog, argument=(), cwd=None, stdout=None, stderr=None, log=None, required_output=(), nb_submit=0):
        command = [prog, *argument]
        mode, _, text = os.environ.get("MADNIS_TEST_FAIL", "").partition(":")
        if text and text in str(cwd) and (mode == "always" or cwd not in self.failed):
            self.failed.add(cwd)
            command = ["sh", "-c", "echo injected failure >> job.log; exit 1"]
        proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.submitted += 1
        self.submitted_ids.append(proc.pid)
        self.procs[proc.pid] = proc
        return proc.pid

    def control_one_job(self, pid):
        return "R" if self.procs[pid].poll() is None else "F"

    def control(self, me_dir=None):
        running = sum(self.control_one_job(pid) == "R" for pid in self.submitted_ids)
        return 0, running, len(self.submitted_ids) - running, 0


new_cluster = {"madnis_subprocess": SubprocessCluster}
