"""Shared fixtures and the markers' skip rules: `mg5` needs MG5aMC and gfortran, `slow` needs ``--slow``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def mg5_home() -> Path | None:
    """MG5aMC's directory from MG5AMC_HOME, else /opt/mg5amc; None if absent."""
    home = Path(os.environ.get("MG5AMC_HOME", "/opt/mg5amc"))
    return home if (home / "bin" / "mg5_aMC").exists() else None


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (CI does)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--slow"):
        skip_slow = pytest.mark.skip(reason="slow: run pytest with --slow")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    home = mg5_home()
    reason = None
    if home is None:
        reason = "MG5aMC not found (set MG5AMC_HOME or unpack it at /opt/mg5amc)"
    elif shutil.which("gfortran") is None:
        reason = "gfortran not found (apt-get install gfortran)"
    if reason:
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if "mg5" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def mg5_dir() -> Path:
    home = mg5_home()
    if home is None:
        pytest.skip("MG5aMC not found")
    return home
