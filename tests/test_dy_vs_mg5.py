"""The built-in Drell-Yan cross section equals stock MadEvent's ``p p > e+ e-`` with the default cards.

Reference: 844.3 +- 1.85 pb (MG5aMC 3.5.7, sm, default run_card, nn23lo1;
../shared/reference/mg5_3.5.7_baselines.md). The built-in side is integrated with VEGAS over the same integrand MadNIS trains on.
"""

from __future__ import annotations

import numpy as np
import pytest
from dy_vegas_reference import vegas_drell_yan

MADEVENT_SIGMA, MADEVENT_ERROR = 844.3, 1.85


@pytest.mark.mg5
def test_builtin_drell_yan_matches_madevent():
    from madnis_plugin.builtin.drell_yan import DrellYanSetup

    ours = vegas_drell_yan(DrellYanSetup(), seed=5)
    assert abs(ours.mean - MADEVENT_SIGMA) < 3 * np.hypot(ours.sdev, MADEVENT_ERROR), ours
    assert ours.sdev < 2.0
