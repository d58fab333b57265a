"""Shared fixtures and the markers' skip rules: `mg5` needs MG5aMC and gfortran, `slow` needs ``--slow``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from madnis_plugin.install import DEFAULT_MG5AMC_HOME, mg5_home

torch.set_num_threads(1)


def installed_mg5_home() -> Path | None:
    """MG5aMC's directory (:func:`madnis_plugin.install.mg5_home`); None if absent."""
    home = mg5_home()
    return home if (home / "bin" / "mg5_aMC").exists() else None


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run tests marked slow (CI does)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--slow"):
        skip_slow = pytest.mark.skip(reason="slow: run pytest with --slow")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip_slow)
    home = installed_mg5_home()
    reason = None
    if home is None:
        reason = f"MG5aMC not found (set MG5AMC_HOME or unpack it at {DEFAULT_MG5AMC_HOME})"
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
