"""MadNIS: neural multi-channel importance sampling (arXiv:2212.06172, arXiv:2311.01548).

Pure torch; knows nothing of MG5aMC. One module per idea: flow (+ splines, permutations), cwnet (channel
weights), losses, buffer, stratification, dropping, vegas/vegas_init (pre-training), integration,
unweighting, sampler (composition), training (the loop), stopping (``steps = "auto"``), checkpoint.
:class:`MadNIS` (:mod:`.facade`) ties them together::

    m = MadNIS(integrand, TrainingConfig(steps=500))
    history = m.train()
    result = m.integrate(100_000); print(result.format_table())
    events = m.sample_weighted(10_000)

The names below load their modules on first use (PEP 562): ``import madnis.config`` (the MG5aMC hook reading the
run_card, in every MadEvent command of an ``output madnis`` directory, stock launches included) must not pay torch's
import, 1-3 s measured on the 2-core machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "ChannelContribution": "integration",
    "History": "training",
    "Integrand": "integrand",
    "IntegrandResult": "integrand",
    "IntegrationResult": "integration",
    "MadNIS": "facade",
    "Projection": "stopping",
    "StopReason": "stopping",
    "StoppingRule": "stopping",
    "TrainingConfig": "config",
    "TrainingProgress": "training",
    "WeightedSample": "sampler",
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from .config import TrainingConfig as TrainingConfig
    from .facade import MadNIS as MadNIS
    from .integrand import Integrand as Integrand
    from .integrand import IntegrandResult as IntegrandResult
    from .integration import ChannelContribution as ChannelContribution
    from .integration import IntegrationResult as IntegrationResult
    from .sampler import WeightedSample as WeightedSample
    from .stopping import Projection as Projection
    from .stopping import StoppingRule as StoppingRule
    from .stopping import StopReason as StopReason
    from .training import History as History
    from .training import TrainingProgress as TrainingProgress


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'madnis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
