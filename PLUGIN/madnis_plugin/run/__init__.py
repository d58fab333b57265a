"""Run orchestration shared by the built-in demo and the MG5aMC plugin: train, integrate, unweight, LHE, report."""

from .orchestrate import (
    ProcessSource,
    RunCheckError,
    RunResult,
    RunSettings,
    SamplerReuseError,
    SourceResult,
    check_run,
    madevent_summary,
    run_processes,
    saved_sampler_path,
    share_events,
)

__all__ = [
    "ProcessSource",
    "RunCheckError",
    "RunResult",
    "RunSettings",
    "SamplerReuseError",
    "SourceResult",
    "check_run",
    "madevent_summary",
    "run_processes",
    "saved_sampler_path",
    "share_events",
]
