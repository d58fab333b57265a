"""A job for tests/test_job_server.py: records where it ran; with a file ``sleep`` in its directory it waits."""

import json
import os
import sys
import time
from pathlib import Path

IMPORTED_IN = os.getpid()  # the process that imported this module (the server, for a forked job)


def run(job_dir: Path) -> None:
    print("job output", flush=True)
    record = {
        "pid": os.getpid(),
        "imported_in": IMPORTED_IN,
        "cwd": os.getcwd(),
        "pgid": os.getpgid(0),
        "mark": os.environ.get("MADNIS_SERVER_MARK"),
    }
    (job_dir / "ran.json").write_text(json.dumps(record))
    if (job_dir / "sleep").exists():
        time.sleep(120)
    if (job_dir / "fail").exists():
        sys.exit("injected failure")
