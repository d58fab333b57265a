"""MadEvent SubProcesses/P* directories as batched shared libraries with a small C ABI, loaded with cffi."""

from .build import BuildError, build, built_library
from .library import ChannelInfo, Evaluation, EventRecords, ProcessInfo, ProcessLibrary, SubprocessInfo
from .workers import BridgeError, Draws

__all__ = [
    "build",
    "built_library",
    "BuildError",
    "BridgeError",
    "Draws",
    "ProcessLibrary",
    "ProcessInfo",
    "ChannelInfo",
    "SubprocessInfo",
    "Evaluation",
    "EventRecords",
]
