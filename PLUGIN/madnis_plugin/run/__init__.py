"""Run orchestration shared by the built-in demo and the MG5aMC plugin: train, integrate, unweight, LHE, report.

The names below load their modules on first use (PEP 562), as ``madnis``'s do: a MadEvent launch starts the job
server (:mod:`.job_server`, standard library only) before anything here imports torch.
"""

from __future__ import annotations

from madnis.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
