"""Run orchestration shared by the built-in demo and the MG5aMC plugin: train, integrate, unweight, LHE, report.

The names below load their modules on first use (PEP 562), as ``madnis``'s do: a MadEvent launch starts the job
server (:mod:`.job_server`, standard library only) before anything here imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "ProcessSource": "source",
    "RunCheckError": "source",
    "RunResult": "orchestrate",
    "RunSettings": "source",
    "SamplerReuseError": "train",
    "SourceResult": "orchestrate",
    "check_run": "source",
    "madevent_summary": "orchestrate",
    "run_processes": "orchestrate",
    "saved_sampler_path": "source",
    "share_events": "events",
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from .events import share_events as share_events
    from .orchestrate import RunResult as RunResult
    from .orchestrate import SourceResult as SourceResult
    from .orchestrate import madevent_summary as madevent_summary
    from .orchestrate import run_processes as run_processes
    from .source import ProcessSource as ProcessSource
    from .source import RunCheckError as RunCheckError
    from .source import RunSettings as RunSettings
    from .source import check_run as check_run
    from .source import saved_sampler_path as saved_sampler_path
    from .train import SamplerReuseError as SamplerReuseError


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
