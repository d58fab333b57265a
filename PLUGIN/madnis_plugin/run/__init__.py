"""Run orchestration shared by the built-in demo and the MG5aMC plugin: train, integrate, unweight, LHE, report."""

from .orchestrate import ProcessSource, RunResult, RunSettings, SourceResult, madevent_summary, run_processes, share_events

__all__ = ["ProcessSource", "RunResult", "RunSettings", "SourceResult", "madevent_summary", "run_processes", "share_events"]
