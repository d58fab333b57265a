"""A MadEvent P-dir (``fortran_bridge.ProcessLibrary``) as a ``madnis.Integrand`` with LHE event records.

The bridge evaluates f(x(r)) * J_channel(r) and MadEvent's prior channel weights alpha^MG for batches of
(channel, r); this adapter converts to torch, groups symmetric channels (symfact) so they share one flow,
conditions the channel-weight net on the momenta, and keeps alpha^MG fixed when the library says the
integrand depends on the channel (``scale_depends_on_channel``): learned channel weights would then change
the integrand itself, not only its variance (91.4 pb instead of 110 pb measured on W+2j when the scale was
clustered with the generating channel). With MadEvent's default ``dynamical_scale_choice = -1`` a MadEvent
P-dir's library draws each point's scale channel from alpha instead (``fortran_bridge/madnis_bridge.f``,
``madnis_draw_scale``), so it says so only for processes with mixed coupling orders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fortran_bridge.records import EventRecords
from madnis import Integrand, IntegrandResult


class BridgeIntegrand(Integrand):
    """``library``: a ``fortran_bridge.ProcessLibrary`` of one SubProcesses/P* directory. ``before_batch``, where
    set, is called before each batch is evaluated (a job grows its workers there, ``run/job.py``)."""

    has_prior = True
    before_batch: Callable[[], None] | None = None

    def __init__(self, library: Any):
        info = library.info
        self.library = library
        self.name = info.name
        self.ndim = int(info.ndim)
        self.n_channels = int(info.n_channels)
        self.nexternal = int(info.nexternal)
        self.channel_groups = symmetry_groups([c.symmetry_group for c in info.channels])
        self.channel_weights_trainable = not bool(info.scale_depends_on_channel)
        self.n_features = 4 * self.nexternal
        self.jets = final_state_partons(info.subprocesses[0].pdg)
        self.momentum_scale = float(sum(info.beam_energies)) / 2.0

    def evaluate(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        if self.before_batch is not None:
            self.before_batch()
        result = self.library.evaluate(
            channel.detach().cpu().numpy().astype(np.int64), r.detach().cpu().numpy().astype(np.float64)
        )
        device, dtype = r.device, r.dtype
        value = torch.as_tensor(result.value, dtype=torch.float64).to(device=device, dtype=dtype)
        alpha = torch.as_tensor(result.alpha, dtype=torch.float64).to(device=device, dtype=dtype)
        momenta = torch.as_tensor(result.momenta, dtype=torch.float64).to(device=device, dtype=dtype)
        ok = torch.as_tensor(np.asarray(result.ok, dtype=bool)).to(device)
        features = (momenta / self.momentum_scale).reshape(len(value), -1)
        return IntegrandResult(value=value, alpha_prior=alpha, ok=ok, features=features, momenta=momenta)

    def event_records(self, r: torch.Tensor, channel: torch.Tensor, generator: np.random.Generator) -> EventRecords:
        """Flavours, helicities, colour flow, mothers, scale and alpha_s of accepted points, as MadEvent draws them."""
        seed = int(generator.integers(1, 29000))  # within RANMAR's seed range (rmarin: ij <= 31328)
        return self.library.event_record(
            channel.detach().cpu().numpy().astype(np.int64), r.detach().cpu().numpy().astype(np.float64), seed
        )


PARTONS = frozenset(range(1, 6)) | {21}  # the quarks lighter than the top, and the gluon (PDG codes)


def final_state_partons(pdg: tuple[int, ...]) -> int:
    """The massless partons among the final-state particles (every leg after the two incoming) of one flavour
    assignment: a P-dir's subprocesses share their particle kinds, so any one of them gives the P-dir's jets."""
    return sum(abs(code) in PARTONS for code in pdg[2:])


def symmetry_groups(symmetry_group: list[int]) -> list[list[int]]:
    """Partition channel indices by their symmetry-group label, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for channel, label in enumerate(symmetry_group):
        groups.setdefault(int(label), []).append(channel)
    return list(groups.values())
