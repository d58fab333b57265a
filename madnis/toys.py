"""Toy multi-channel integrands with exactly known integrals, for tests and benchmarks.

Each toy is an :class:`~madnis.integrand.Integrand` built like a MadEvent process: channels map the unit
cube onto the physical space with a Breit-Wigner (Cauchy) inverse CDF on a resonant variable, the value is
``f(x) * J_channel(r)`` and the prior channel weights come from the Breit-Wigner terms (MadGraph's
single-diagram-enhanced weights). ``exact`` is the integral of ``f`` over the unit cube, truncation included.

- :class:`CamelBack1D`: two Gaussian peaks, two Breit-Wigner channels (MadNIS paper, sec. 4.1);
- :class:`TwoResonances4D`: two narrow resonances in 4D, two channels (optionally flat, ``mapped=False``);
- :class:`ManyChannels10D`: 48 channels in 10D in 24 groups of 2 symmetric channels (speed tests);
- :class:`ZeroChannelToy`: three channels, the last one contributing exactly nothing (dropping);
- :class:`ParetoChannels`: channels whose weights have a power-law tail, as a short-trained sampler's on a
  matrix element (the bias of pooling rules, ``benchmarks/sigma_bias.py``).
"""

from __future__ import annotations

import math

import torch

from .integrand import Integrand, IntegrandResult


def _cauchy_range(mass, width):
    mass, width = torch.as_tensor(mass, dtype=torch.float64), torch.as_tensor(width, dtype=torch.float64)
    return torch.atan(-mass / width), torch.atan((1.0 - mass) / width)


def cauchy_map(r: torch.Tensor, mass, width) -> tuple[torch.Tensor, torch.Tensor]:
    """Map r in [0,1] with the inverse CDF of a Cauchy (Breit-Wigner) at ``mass`` truncated to [0,1].

    ``mass`` and ``width`` are floats or tensors broadcasting with r. Returns ``(x, jacobian)``, jacobian = dx/dr.
    """
    lo, hi = (t.to(r) for t in _cauchy_range(mass, width))
    width = torch.as_tensor(width).to(r)
    t = lo + r * (hi - lo)
    x = (torch.as_tensor(mass).to(r) + width * torch.tan(t)).clamp(0.0, 1.0)
    return x, (hi - lo) * width / torch.cos(t) ** 2


def cauchy_inverse(x: torch.Tensor, mass, width) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`cauchy_map`: ``(r, dx/dr)`` for a point x."""
    lo, hi = (t.to(x) for t in _cauchy_range(mass, width))
    mass, width = torch.as_tensor(mass).to(x), torch.as_tensor(width).to(x)
    t = torch.atan((x - mass) / width)
    return (t - lo) / (hi - lo), (hi - lo) * width / torch.cos(t) ** 2


def breit_wigner(x: torch.Tensor, mass: float, width: float) -> torch.Tensor:
    """Normalised Cauchy density (integral 1 over the real line)."""
    return width / math.pi / ((x - mass) ** 2 + width**2)


def breit_wigner_integral(mass: float, width: float) -> float:
    """Integral of :func:`breit_wigner` over [0, 1]."""
    return (math.atan((1.0 - mass) / width) - math.atan(-mass / width)) / math.pi


def gaussian(x: torch.Tensor, mean: float, sigma: float) -> torch.Tensor:
    """Normalised Gaussian density."""
    return torch.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def gaussian_integral(mean: float, sigma: float) -> float:
    """Integral of :func:`gaussian` over [0, 1]."""
    cdf = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # noqa: E731
    return cdf((1.0 - mean) / sigma) - cdf(-mean / sigma)


class ResonantChannels(Integrand):
    """Channels that each map one resonant variable with a Cauchy inverse CDF (identity elsewhere).

    Subclasses set ``resonant_variable``, ``masses``, ``widths`` (one per channel, width 0 = flat channel)
    and implement :meth:`f`. The prior channel weights are proportional to each channel's Breit-Wigner
    on its resonant variable (the MadGraph choice); ``features`` are the physical point x.
    """

    resonant_variable: list[int]
    masses: list[float]
    widths: list[float]
    exact: float

    def f(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def channel_map(self, r: torch.Tensor, channel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x(r) and the Jacobian dx/dr of each point's channel."""
        x, jacobian = r.clone(), torch.ones_like(r[:, 0])
        mapped = torch.tensor(self.widths, device=r.device)[channel] > 0
        if mapped.any():
            c = channel[mapped]
            v = torch.tensor(self.resonant_variable, device=r.device)[c]
            masses, widths = torch.tensor(self.masses).to(r)[c], torch.tensor(self.widths).to(r)[c]
            rows = torch.nonzero(mapped)[:, 0]
            x[rows, v], jacobian[rows] = cauchy_map(r[rows, v], masses, widths)
        return x, jacobian

    def channel_density(self, x: torch.Tensor) -> torch.Tensor:
        """(n, n_channels): each channel's density in x for a flat r, i.e. 1 / J_c(r_c(x)) (1 for flat channels)."""
        widths = torch.tensor(self.widths).to(x)
        resonant = x[:, self.resonant_variable]
        safe_widths = torch.where(widths > 0, widths, torch.ones_like(widths))
        jacobian = cauchy_inverse(resonant, torch.tensor(self.masses).to(x), safe_widths)[1]
        return torch.where(widths > 0, 1.0 / jacobian, torch.ones_like(jacobian))

    def prior(self, x: torch.Tensor) -> torch.Tensor | None:
        """MadGraph-like prior: each channel's Breit-Wigner, normalised over channels."""
        density = self.channel_density(x)
        return density / density.sum(dim=1, keepdim=True)

    def evaluate(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        x, jacobian = self.channel_map(r, channel)
        alpha = self.prior(x) if self.has_prior else None
        return IntegrandResult(value=self.f(x) * jacobian, alpha_prior=alpha, features=x)


class CamelBack1D(ResonantChannels):
    """1D camel back (two Gaussians at 0.25 and 0.75, width 0.05) with one Breit-Wigner channel per peak.

    ``prior="flat"`` gives no prior (the channel-weight net starts from 1/2 each); ``prior="bw"`` uses the
    two Breit-Wigner terms. Features are x.
    """

    ndim, n_channels, n_features = 1, 2, 1
    peaks, sigma, bw_width = (0.25, 0.75), 0.05, 0.05

    def __init__(self, prior: str = "flat"):
        if prior not in ("flat", "bw"):
            raise ValueError(f"prior must be 'flat' or 'bw', got {prior!r}")
        self.has_prior = prior == "bw"
        self.resonant_variable, self.masses, self.widths = [0, 0], list(self.peaks), [self.bw_width] * 2
        self.exact = sum(gaussian_integral(p, self.sigma) for p in self.peaks) / 2

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return sum(gaussian(x[:, 0], p, self.sigma) for p in self.peaks) / 2


class TwoResonances4D(ResonantChannels):
    """4D toy: f = sum over k of a Breit-Wigner (width 0.01) in x_k times Gaussians (width 0.1) in the rest.

    Channel k maps x_k with the Cauchy inverse CDF of its resonance (``mapped=False``: flat channels).
    """

    ndim, n_channels, n_features, has_prior = 4, 2, 4, True
    bw_masses, bw_width, gauss_mean, gauss_sigma, amplitudes = (0.3, 0.7), 0.01, 0.5, 0.1, (1.0, 0.5)

    def __init__(self, mapped: bool = True):
        self.mapped = mapped
        self.resonant_variable, self.masses = [0, 1], list(self.bw_masses)
        self.widths = [self.bw_width if mapped else 0.0] * 2
        gauss = gaussian_integral(self.gauss_mean, self.gauss_sigma) ** (self.ndim - 1)
        self.exact = sum(
            a * breit_wigner_integral(m, self.bw_width) * gauss for a, m in zip(self.amplitudes, self.bw_masses)
        )

    def terms(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2): the two resonant terms of f."""
        gauss = gaussian(x, self.gauss_mean, self.gauss_sigma)
        out = []
        for k, (a, m) in enumerate(zip(self.amplitudes, self.bw_masses)):
            others = torch.cat([gauss[:, :k], gauss[:, k + 1 :]], dim=1).prod(dim=1)
            out.append(a * breit_wigner(x[:, k], m, self.bw_width) * others)
        return torch.stack(out, dim=1)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.terms(x).sum(dim=1)

    def prior(self, x: torch.Tensor) -> torch.Tensor:
        bw = torch.stack([breit_wigner(x[:, k], m, self.bw_width) for k, m in enumerate(self.bw_masses)], dim=1)
        return bw / bw.sum(dim=1, keepdim=True)


class ManyChannels10D(ResonantChannels):
    """48 channels in 10D, 24 groups of 2 symmetric channels (the pair shares a mass, resonant variables swapped).

    Channel 2g+s is resonant in variable 2(g mod 5)+s at mass 0.1 + 0.8 g/23 (width 0.02); f is the sum of
    all 48 Breit-Wigner terms times Gaussians (width 0.2) in the other variables.
    """

    ndim, n_channels, n_features, has_prior = 10, 48, 10, True
    bw_width, gauss_mean, gauss_sigma = 0.02, 0.5, 0.2

    def __init__(self):
        self.channel_groups = [[2 * g, 2 * g + 1] for g in range(24)]
        self.resonant_variable = [2 * (c // 2 % 5) + c % 2 for c in range(48)]
        self.masses = [0.1 + 0.8 * (c // 2) / 23 for c in range(48)]
        self.widths = [self.bw_width] * 48
        gauss = gaussian_integral(self.gauss_mean, self.gauss_sigma) ** (self.ndim - 1)
        self.exact = sum(breit_wigner_integral(m, self.bw_width) for m in self.masses) * gauss / 48

    def f(self, x: torch.Tensor) -> torch.Tensor:
        gauss = gaussian(x, self.gauss_mean, self.gauss_sigma)
        resonant = x[:, self.resonant_variable]
        others = gauss.prod(dim=1, keepdim=True) / gauss[:, self.resonant_variable]
        return (breit_wigner(resonant, torch.tensor(self.masses).to(x), self.bw_width) * others).mean(dim=1)


class ZeroChannelToy(ResonantChannels):
    """2D toy with three channels: flat, Breit-Wigner in x0, and a flat channel with prior weight ``leak``.

    f = BW(x0; 0.2, 0.05) * Gauss(x1; 0.5, 0.2). With ``leak=0`` channel 2 contributes exactly nothing
    (its prior weight is 0 everywhere); with ``leak>0`` it carries a fraction ``leak`` of the integral, so
    dropping it tests that its weight is redistributed to the remaining channels.
    """

    ndim, n_channels, n_features, has_prior = 2, 3, 2, True

    def __init__(self, leak: float = 0.0):
        self.leak = leak
        self.resonant_variable, self.masses, self.widths = [0, 0, 0], [0.2, 0.2, 0.2], [0.0, 0.05, 0.0]
        self.exact = breit_wigner_integral(0.2, 0.05) * gaussian_integral(0.5, 0.2)

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return breit_wigner(x[:, 0], 0.2, 0.05) * gaussian(x[:, 1], 0.5, 0.2)

    def prior(self, x: torch.Tensor) -> torch.Tensor:
        row = torch.tensor([(1 - self.leak) / 2, (1 - self.leak) / 2, self.leak], dtype=x.dtype, device=x.device)
        return row.expand(x.shape[0], 3).clone()


class ParetoChannels(Integrand):
    """2D, ``n_channels`` channels each covering its own strip of x0 (alpha^prior one-hot), value in channel c:
    s_c r0^(-1/a) (1 + cos(2 pi r1) / 2), s_c = 1 / (1 + c): under a flat sampler the weights have a Pareto tail,
    P(w > t) ~ t^-a (finite variance for a > 2), which training flattens only slowly. Prior channel weights are
    fixed (not trainable), as MadEvent's under a channel-dependent scale; ``exact`` = a / (a - 1) sum_c s_c."""

    ndim, has_prior, channel_weights_trainable = 2, True, False

    def __init__(self, n_channels: int = 20, tail_index: float = 2.5):
        self.n_channels, self.tail_index = n_channels, tail_index
        self.scale = torch.tensor([1.0 / (1 + c) for c in range(n_channels)], dtype=torch.float64)
        self.exact = float(self.scale.sum()) * tail_index / (tail_index - 1)

    def evaluate(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        tail = r[:, 0].clamp_min(torch.finfo(r.dtype).tiny) ** (-1 / self.tail_index)
        value = self.scale.to(r)[channel] * tail * (1 + 0.5 * torch.cos(2 * math.pi * r[:, 1]))
        return IntegrandResult(value, torch.nn.functional.one_hot(channel, self.n_channels).to(r))
