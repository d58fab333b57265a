"""Multi-channel training losses, importance-weighted for buffered samples (MadNIS secs. 2.2, 2.4).

Channel i integrates ``alpha_i(x) * value`` with points r ~ q_i. A point drawn earlier from ``q_sample``
(stored in the buffer) is reweighted by ``q_model / q_sample`` so every loss estimates the same quantity
as if the point had been drawn from the current flow ``q_model``:

- ``I_i = E_sample[alpha value / q_sample]``,
- ``sigma_i^2 = E_model[(alpha value / q_model)^2] - I_i^2 = E_sample[(alpha value)^2 / (q_model q_sample)] - I_i^2``.

Losses (inputs per point: generating ``channel``, ``value``, differentiable ``q_model`` and ``alpha`` of the
generating channel, stored ``q_sample``; gradients flow into the flow and the channel-weight net):

- ``stratified_variance``: (sum_i sigma_i)^2, the variance of the integral when N_i ∝ sigma_i;
- ``stratified_moment3``: (sum_i m_i)^2 with m_i = E_model[|w|^3]^(1/3), the same form with the third moment of the
  weights w = alpha value / q_model in place of their spread. Like the variance it is smallest for q_i ∝ |alpha_i
  value| (Jensen), but it weighs the largest weights more, and those set the unweighting efficiency (w_max). The
  default (``madnis.config.LOSS``, measured there);
- ``variance``: sum_i sigma_i^2, the variance for equal points per channel;
- ``kl``: sum_i (I_i / I) KL(p_i || q_i) with p_i = alpha_i value / I_i;
- ``rkl``: sum_i (I_i / I) KL(q_i || p_i).
Channels with fewer than two points in the batch do not enter.

A point with value 0 (outside the cuts: half of a W+2j or ``p p > e+ e- j`` sampler's points early in training) adds
nothing to any term of the first four losses, only to the point counts of its channel's means. So a buffered batch may
leave such points out and pass their number per channel (``zero_counts``): the same loss and gradient for the flow and
channel-weight work of the non-zero points alone (:mod:`madnis.buffer`). ``rkl`` penalises q at those points and
needs them (:data:`LOSSES_BLIND_TO_ZEROS`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SIGMA_FLOOR = 1e-10  # keeps d sqrt(var) / d var finite at var = 0; values are scaled to I ~ 1 by the trainer


def channel_means(
    x: torch.Tensor, channel: torch.Tensor, n_channels: int, zero_counts: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means of ``x`` (0 for empty channels) and the point counts; ``zero_counts``: points per channel
    left out whose ``x`` is 0 (they count, module docstring)."""
    counts = torch.bincount(channel, minlength=n_channels)
    if zero_counts is not None:
        counts = counts + zero_counts.to(counts.device)
    sums = torch.zeros(n_channels, dtype=x.dtype, device=x.device).index_add(0, channel, x)
    return sums / counts.clamp_min(1).to(x.dtype), counts


def channel_integrals(
    channel, value, q_sample, alpha, n_channels, zero_counts=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted I_i (differentiable in alpha) and the point counts."""
    return channel_means(alpha * value / q_sample, channel, n_channels, zero_counts)


def channel_variances(
    channel, value, q_model, q_sample, alpha, n_channels, zero_counts=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-weighted sigma_i^2 under q_model (Bessel-corrected, clamped at 0) and a mask of usable channels."""
    integral, counts = channel_integrals(channel, value, q_sample, alpha, n_channels, zero_counts)
    second, _ = channel_means((alpha * value) ** 2 / (q_model * q_sample), channel, n_channels, zero_counts)
    usable = counts >= 2
    bessel = counts.to(value.dtype) / (counts.to(value.dtype) - 1).clamp_min(1)
    variance = ((second - integral**2) * bessel).clamp_min(0.0)
    return torch.where(usable, variance, torch.zeros_like(variance)), usable


def stratified_variance_loss(channel, value, q_model, q_sample, alpha, n_channels, zero_counts=None) -> torch.Tensor:
    variance, usable = channel_variances(channel, value, q_model, q_sample, alpha, n_channels, zero_counts)
    sigma = torch.where(usable, torch.sqrt(variance + SIGMA_FLOOR**2), torch.zeros_like(variance))
    return sigma.sum() ** 2


def stratified_moment3_loss(channel, value, q_model, q_sample, alpha, n_channels, zero_counts=None) -> torch.Tensor:
    third, counts = channel_means(
        (alpha * value).abs() ** 3 / (q_model**2 * q_sample), channel, n_channels, zero_counts
    )
    usable = counts >= 2
    norm = torch.where(usable, (third + SIGMA_FLOOR**3) ** (1 / 3), torch.zeros_like(third))
    return norm.sum() ** 2


def variance_loss(channel, value, q_model, q_sample, alpha, n_channels, zero_counts=None) -> torch.Tensor:
    return channel_variances(channel, value, q_model, q_sample, alpha, n_channels, zero_counts)[0].sum()


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))


def kl_loss(channel, value, q_model, q_sample, alpha, n_channels, zero_counts=None) -> torch.Tensor:
    integral, counts = channel_integrals(channel, value, q_sample, alpha, n_channels, zero_counts)
    weight_sample = alpha * value / q_sample
    log_ratio = _safe_log(alpha * value / q_model) - _safe_log(integral)[channel]
    term = torch.where(weight_sample > 0, weight_sample * log_ratio, torch.zeros_like(weight_sample))
    usable = counts >= 2
    kl, _ = channel_means(term, channel, n_channels, zero_counts)
    return kl[usable].sum() / integral[usable].sum().clamp_min(torch.finfo(kl.dtype).tiny)


def rkl_loss(channel, value, q_model, q_sample, alpha, n_channels, zero_counts=None) -> torch.Tensor:
    if zero_counts is not None:
        raise ValueError("the rkl loss needs the points with value 0 (it penalises q there): keep them")
    integral, counts = channel_integrals(channel, value, q_sample, alpha, n_channels)
    log_ratio = _safe_log(integral)[channel] - _safe_log(alpha * value / q_model)
    rkl, _ = channel_means(q_model / q_sample * log_ratio, channel, n_channels)
    usable = counts >= 2
    share = (integral / integral[usable].sum().clamp_min(torch.finfo(rkl.dtype).tiny)).detach()
    return (share * rkl)[usable].sum()


LOSSES_BLIND_TO_ZEROS = frozenset({"stratified_variance", "stratified_moment3", "variance", "kl"})

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "stratified_variance": stratified_variance_loss,
    "stratified_moment3": stratified_moment3_loss,
    "variance": variance_loss,
    "kl": kl_loss,
    "rkl": rkl_loss,
}
