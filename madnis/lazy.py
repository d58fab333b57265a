"""Names of a package that load their modules on first use (PEP 562 module ``__getattr__``).

Why: ``madnis`` and ``madnis_plugin.run`` re-export names from modules that import torch (1-3 s), while some of their
users need only torch-free parts (the MG5aMC hook reads ``madnis.config`` in every MadEvent command of an
``output madnis`` directory; a launch starts its job server before it loads torch).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: name -> its module's, for ``homes`` (name -> module in the
    package); each name is imported on first use and kept in the package's namespace."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{homes[name]}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *homes})

    return __getattr__, __dir__
