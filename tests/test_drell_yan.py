"""Built-in Drell-Yan: partonic cross section vs the textbook formula, mappings, prior, events."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from madnis_plugin.builtin.drell_yan import GEV2_TO_PB, DrellYan, DrellYanSetup, ZPrime


@pytest.fixture(scope="module")
def dy() -> DrellYan:
    try:
        return DrellYan(DrellYanSetup())
    except FileNotFoundError as error:
        pytest.skip(str(error))


def textbook_sigma_hat(shat: float, quark: int, dy: DrellYan) -> float:
    """sigma(q q~ -> e+ e-) = 4 pi alpha^2 / (9 s) [Qq^2 Ql^2 + 2 Qq Ql gVq gVl Re chi + (gVq^2+gAq^2)(gVl^2+gAl^2)|chi|^2]."""
    ew = dy.setup.ew
    sw2 = ew.sw2
    qq, t3q = (2 / 3, 0.5) if quark in (2, 4) else (-1 / 3, -0.5)
    ql, t3l = -1.0, -0.5
    gvq, gaq = t3q - 2 * qq * sw2, t3q
    gvl, gal = t3l - 2 * ql * sw2, t3l
    chi = shat / (4 * sw2 * (1 - sw2)) / complex(shat - ew.MZ**2, ew.MZ * ew.WZ)
    bracket = qq**2 * ql**2 + 2 * qq * ql * gvq * gvl * chi.real + (gvq**2 + gaq**2) * (gvl**2 + gal**2) * abs(chi) ** 2
    return 4 * math.pi * ew.alpha**2 / (9 * shat) * bracket * GEV2_TO_PB


@pytest.mark.parametrize("quark", [2, 1])
@pytest.mark.parametrize("sqrt_shat", [40.0, 91.188, 250.0])
def test_partonic_cross_section_matches_textbook(dy, quark, sqrt_shat):
    shat = sqrt_shat**2
    nodes, weights = np.polynomial.legendre.leggauss(8)  # exact for the quadratic angular dependence
    cos = torch.tensor(nodes, dtype=torch.float64)
    total, per_diagram = dy.matrix_elements(torch.full_like(cos, shat), cos, quark)
    sigma = float((total * torch.tensor(weights)).sum()) * 2 * math.pi / (32 * math.pi**2) / (2 * shat) * GEV2_TO_PB
    assert sigma == pytest.approx(textbook_sigma_hat(shat, quark, dy), rel=1e-6)
    assert torch.all(per_diagram >= 0)


def test_antiquark_first_flips_the_angle(dy):
    r = torch.tensor([[0.3, 0.5, 0.8, 0.1]], dtype=torch.float64)
    k = dy._kinematics(r, torch.tensor([1]))
    forward = dy.matrix_elements(k["shat"], k["cos"], 2)[0]
    backward = dy.matrix_elements(k["shat"], -k["cos"], 2)[0]
    assert not torch.allclose(forward, backward)  # the Z makes the angular distribution asymmetric


@pytest.mark.parametrize("channel", [0, 1])
def test_mapping_jacobian_is_the_inverse_density(dy, channel):
    r = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    c = torch.full_like(r, channel, dtype=torch.long)
    h = 1e-6
    shat, jac = dy._map_shat(r, c)
    numeric = (dy._map_shat(r + h, c)[0] - dy._map_shat(r - h, c)[0]) / (2 * h)
    assert torch.allclose(jac, numeric, rtol=1e-5)
    assert torch.all((shat >= dy.shat_min) & (shat <= dy.shat_max))


def test_prior_features_momenta(dy):
    gen = torch.Generator().manual_seed(1)
    r = torch.rand(2000, 4, generator=gen, dtype=torch.float64)
    channel = torch.randint(0, 2, (2000,), generator=gen)
    out = dy(r, channel)
    assert torch.allclose(out.alpha_prior.sum(1), torch.ones(2000, dtype=torch.float64))
    assert (out.value > 0).float().mean() > 0.2 and torch.all(out.value >= 0)
    p = out.momenta
    assert torch.allclose(p[:, 0] + p[:, 1], p[:, 2] + p[:, 3], atol=1e-8)
    mll2 = (p[:, 2] + p[:, 3])[:, 0] ** 2 - ((p[:, 2] + p[:, 3])[:, 1:] ** 2).sum(1)
    near_z = (mll2.sqrt() - 91.188).abs() < 5
    assert out.alpha_prior[near_z, 1].mean() > 0.9  # the Z dominates on its peak
    assert out.features.min() >= 0 and out.features.max() <= 1


def test_zprime_adds_a_channel_peaked_at_its_mass():
    try:
        dy = DrellYan(DrellYanSetup(zprime=ZPrime(mass=400.0, width=2.0)))
    except FileNotFoundError as error:
        pytest.skip(str(error))
    assert dy.n_channels == 3
    r = torch.rand(500, 4, dtype=torch.float64)
    k = dy._kinematics(r, torch.full((500,), 2))
    assert ((k["shat"].sqrt() - 400).abs() < 20).float().mean() > 0.8


def test_event_records(dy):
    r = torch.rand(300, 4, dtype=torch.float64)
    rec = dy.event_records(r, torch.ones(300, dtype=torch.long), np.random.default_rng(3))
    assert set(np.abs(rec.pdg[:, 0])) <= {1, 2, 3, 4}
    assert np.all(rec.pdg[:, 0] == -rec.pdg[:, 1]) and np.all(rec.pdg[:, 2:] == [-11, 11])
    quark_first = rec.pdg[:, 0] > 0
    assert np.all(rec.color[quark_first, 0, 0] == rec.color[quark_first, 1, 1])
    assert np.all(rec.color[~quark_first, 0, 1] == rec.color[~quark_first, 1, 0])
    p = rec.momenta
    assert np.allclose(p[:, 0, :4] + p[:, 1, :4], p[:, 2, :4] + p[:, 3, :4], atol=1e-8)
    assert np.all(rec.aqcd > 0.05) and np.allclose(rec.aqed, 1 / 132.507)
