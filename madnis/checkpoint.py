"""Save and load a trained MadNIS state in one file (torch.save of a plain dict).

The file holds the flows, the channel-weight net, the active channels (sampler state), the running channel
statistics (stratification), the VEGAS grids, the trainer (optimiser, schedule, loss scale, counters),
the random generator's state, the configuration and a format version;
a file of another format version is refused with a one-line error. Only tensors and plain Python values
are stored, so it loads with ``torch.load(weights_only=True)``. A file is written under a temporary
name and renamed into place when complete, so an interrupted save never leaves a broken checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with the format version added, atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: the previous file stays as it was
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (on the CPU); ValueError if it was written in another format version."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: MadNIS checkpoint format version {version!r}, this madnis reads version {FORMAT_VERSION}"
        )
    return state
