"""The multi-channel integrand interface: the seam between MadNIS and any physics code.

MadNIS never knows where an integrand comes from (a MadEvent P-dir through the Fortran bridge,
the built-in Drell-Yan process, a test toy). Everything it needs is here:

- ``r`` (n, ndim) in the unit cube: the point *after* the flow, *before* the channel's analytic mapping;
- ``channel`` (n,) int: which channel's mapping to use for each point (mixed channels in one batch);
- the result: ``value = f(x(r)) * J_channel(r)`` (what the channel integrates before its channel weight),
  ``alpha_prior`` (n, n_channels) prior channel weights summing to 1 where the point is valid,
  ``ok`` (n,) False for points that failed (NaN/inf, crashed evaluation; counted, treated as value 0),
  optional ``features`` (n, n_features): a channel-independent description of the physical point
  (e.g. momenta) on which the channel-weight network is conditioned, optional ``momenta``.

Channel ``i``'s contribution to the integral is ``alpha_i(x) * value / q_i(r)`` for ``r ~ q_i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class IntegrandResult:
    """What an integrand returns for a batch of (r, channel)."""

    value: torch.Tensor
    alpha_prior: torch.Tensor | None = None
    ok: torch.Tensor | None = None
    features: torch.Tensor | None = None
    momenta: torch.Tensor | None = None

    def checked(self) -> IntegrandResult:
        """Return a copy where failed or non-finite points have value 0 and a flat, finite prior.

        Never produces 0/0: invalid priors are replaced by the uniform distribution.
        """
        value = self.value
        ok = torch.isfinite(value) if self.ok is None else self.ok & torch.isfinite(value)
        value = torch.where(ok, value, torch.zeros_like(value))
        alpha = self.alpha_prior
        if alpha is not None:
            alpha_ok = torch.isfinite(alpha).all(dim=1) & (alpha.sum(dim=1) > 0)
            flat = torch.full_like(alpha, 1.0 / alpha.shape[1])
            alpha = torch.where(alpha_ok[:, None], alpha, flat)
            alpha = alpha / alpha.sum(dim=1, keepdim=True)
        features = self.features
        if features is not None:
            features = torch.where(torch.isfinite(features), features, torch.zeros_like(features))
        return IntegrandResult(value, alpha, ok, features, self.momenta)


class Integrand:
    """Base class of multi-channel integrands.

    Subclasses set the metadata in ``__init__`` and implement :meth:`evaluate`.

    Attributes:
        ndim: dimension of the unit cube each channel is mapped from.
        n_channels: number of channels.
        channel_groups: partition of the channels into groups sharing one flow (symmetric channels);
            ``None`` means every channel is its own group.
        has_prior: whether :meth:`evaluate` returns ``alpha_prior``.
        n_features: size of ``features`` (0 if none); the channel-weight net then has no input but the prior.
        channel_weights_trainable: False when learned channel weights would change the answer
            (e.g. a channel-dependent scale choice); the trainer then keeps ``alpha_prior``.
        jets: massless final-state partons (0 where the integrand is no scattering process); with two or more the
            ``auto`` settings treat it as multi-jet (:meth:`madnis.TrainingConfig.defensive_share`).
    """

    ndim: int
    n_channels: int
    channel_groups: list[list[int]] | None = None
    has_prior: bool = False
    n_features: int = 0
    channel_weights_trainable: bool = True
    jets: int = 0

    def evaluate(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        raise NotImplementedError

    def __call__(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        return self.evaluate(r, channel).checked()

    def groups(self) -> list[list[int]]:
        """The channel groups, defaulting to one group per channel."""
        if self.channel_groups is None:
            return [[i] for i in range(self.n_channels)]
        return [list(g) for g in self.channel_groups]

    def group_of_channel(self) -> torch.Tensor:
        """(n_channels,) long tensor: the group index of each channel."""
        index = torch.empty(self.n_channels, dtype=torch.long)
        for g, members in enumerate(self.groups()):
            index[list(members)] = g
        return index


def validate_groups(groups: Sequence[Sequence[int]], n_channels: int) -> None:
    """Raise ValueError unless ``groups`` partitions ``range(n_channels)``."""
    flat = sorted(c for g in groups for c in g)
    if flat != list(range(n_channels)):
        raise ValueError(f"channel groups {list(map(list, groups))} do not partition {n_channels} channels")
