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

from .lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
