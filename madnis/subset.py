"""A multi-channel integrand cut into parts by its channels, each part an integrand of its own.

Why: the channels of one process can then be trained, integrated and unweighted in independent jobs, on
every core, as MadEvent integrates its channels (G directories) in separate jobs. Part S of the channels
carries ``f_S(x) = f(x) * sum_{i in S} alpha_i(x)``, with prior channel weights ``alpha_i / sum_{j in S}
alpha_j`` over its own channels: channel i of S contributes ``alpha_i f / q_i`` exactly as in the whole,
and the parts of a partition add up to the integrand (sum_S f_S = f), so their integrals add up to the
integral and their unweighted events, shared by those integrals, follow f. Channel weights learned within a
part stay a partition of unity of that part's integrand, so the split is exact with trained or fixed weights.
Parts are whole channel groups (symmetric channels share one flow).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .integrand import Integrand, IntegrandResult


def partition_groups(
    groups: Sequence[Sequence[int]], parts: int, weights: Sequence[float] | None = None
) -> list[list[int]]:
    """The channels of ``min(parts, len(groups))`` parts of whole groups. Without ``weights``, dealt in turn (group
    g to part g mod k): neighbouring diagrams, often alike, land in different parts. With a weight per group (e.g.
    its estimated cross section), the heaviest first, each to the part with the least weight so far (ties: the
    first such part), so that the parts' weights are nearly equal: each part's job then has about as many events
    to make (``g g > t t~ g`` dealt in turn: 31 % and 69 % of sigma)."""
    k = max(1, min(parts, len(groups)))
    if weights is None:
        return [sorted(c for g in groups[p::k] for c in g) for p in range(k)]
    members: list[list[int]] = [[] for _ in range(k)]
    load = [0.0] * k
    for g in sorted(range(len(groups)), key=lambda g: -weights[g]):
        lightest = load.index(min(load))
        members[lightest] += groups[g]
        load[lightest] += weights[g]
    return [sorted(channels) for channels in members]


class ChannelSubset(Integrand):
    """The part of ``integrand`` carried by ``channels`` (whole groups of it); channel j here is
    ``channels[j]`` there. Needs the prior channel weights (``has_prior``)."""

    has_prior = True

    def __init__(self, integrand: Integrand, channels: Sequence[int]):
        if not integrand.has_prior:
            raise ValueError("a channel subset needs the integrand's prior channel weights (has_prior)")
        self.integrand = integrand
        self.channels = sorted(int(c) for c in channels)
        local = {c: j for j, c in enumerate(self.channels)}
        groups = [g for g in integrand.groups() if any(c in local for c in g)]
        if not self.channels or any(c not in local for g in groups for c in g):
            raise ValueError(f"channels {self.channels} are not a non-empty union of whole channel groups")
        self.channel_groups = [[local[c] for c in g] for g in groups]
        self.ndim, self.n_channels = integrand.ndim, len(self.channels)
        self.n_features = integrand.n_features
        self.channel_weights_trainable = integrand.channel_weights_trainable
        self.global_channel = torch.tensor(self.channels)

    def evaluate(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        whole = self.integrand(r, self.global_channel.to(channel.device)[channel])
        assert whole.alpha_prior is not None
        alpha = whole.alpha_prior[:, self.global_channel.to(r.device)]
        share = alpha.sum(dim=1)
        # a point none of these channels weighs contributes nothing here; checked() gives it a flat prior
        alpha = torch.where(share[:, None] > 0, alpha / torch.where(share > 0, share, 1)[:, None], 0)
        return IntegrandResult(whole.value * share, alpha, whole.ok, whole.features, whole.momenta)
