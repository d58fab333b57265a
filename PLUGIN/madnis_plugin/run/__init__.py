"""Run orchestration shared by the built-in demo and the MG5aMC plugin: train, integrate, unweight, LHE, report."""

from .events import share_events
from .orchestrate import RunResult, SourceResult, madevent_summary, run_processes
from .source import ProcessSource, RunCheckError, RunSettings, check_run, saved_sampler_path
from .train import SamplerReuseError

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
