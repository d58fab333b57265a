"""VEGAS reference integral of the built-in Drell-Yan process (the multi-channel integrand MadNIS trains on)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def vegas_drell_yan(setup, seed: int):
    """gvar mean +- sdev of the built-in Drell-Yan cross section [pb]: 4 adaptation + 6 x 1e4-point iterations."""
    vegas = pytest.importorskip("vegas")
    from madnis_plugin.builtin.drell_yan import DrellYan, prior_multichannel

    dy = DrellYan(setup)

    @vegas.lbatchintegrand
    def multichannel(x):
        return prior_multichannel(dy, torch.as_tensor(np.asarray(x))).numpy()

    np.random.seed(seed)
    integrator = vegas.Integrator(4 * [[0, 1]])
    integrator(multichannel, nitn=4, neval=10_000)
    return integrator(multichannel, nitn=6, neval=10_000)
