"""Built-in p p -> gamma/Z(/Z') -> e+ e- at LO: a multi-channel integrand that needs no MG5aMC.

Why: the demo, the tests and the benchmarks need a real collider process whose answer is known
(stock MadEvent gives 844.3 +- 1.85 pb with the default cards) and whose channel structure is the
textbook one for multi-channel importance sampling (one channel per s-channel propagator).

Physics (all as MG5aMC 3.5.7 with the ``sm`` model's default restrictions and the default LO run_card):
- partons u d s c and their antiquarks, both beam orderings (MG5aMC's default ``p``, no b);
  massless quarks and leptons; full gamma/Z(/Z') interference from helicity amplitudes;
- EW inputs aEWM1 = 132.507, Gf = 1.16639e-5, MZ = 91.188, WZ = 2.441404, with MW, sw2, ee derived
  as the ``sm`` UFO does; fixed-width Breit-Wigner propagators;
- cuts: pT(l) > 10 GeV, |eta(l)| < 2.5, dR(l,l) > 0.4, mmll = 0 (run_card defaults), sqrt(s) = 13 TeV;
- scale: mu_F = mu_R = sqrt(s-hat). MadEvent's default ``dynamical_scale_choice = -1`` clusters e+ e-
  into the s-channel and takes the transverse mass of the remaining 2 -> 1 core (setclscales in
  reweight.f), which at LO (pT(ll) = 0) is m_ll = sqrt(s-hat). (Irrelevant to alpha_s: none at LO.)
- PDF: NNPDF23_lo_as_0130_qed (MG5aMC's ``nn23lo1``) through :mod:`.pdf`.

Optional Z': a sequential-SM-like vector boson with couplings ``coupling_scale`` times the Z's; defaults
(mass 400 GeV, width 2 GeV, coupling_scale 1) are a narrow toy resonance chosen to be clearly visible in
a 1000-event demo (about 5 % of the cross section; a sequential Z' decaying only to SM fermions would be
~6x wider), not a physical model point.

Channels (MadEvent-like, ndim = 4: r = (r_shat, r_y, r_cos, r_phi)): one per s-channel propagator.
Massive V: s-hat = M^2 + M Gamma tan(theta) with theta uniform (Breit-Wigner map); photon:
power law s-hat^-nu (nu = 2 by default); then rapidity y uniform in [log(tau)/2, -log(tau)/2],
cos(theta*) uniform in [-1, 1] (angle of the e- to beam 1 in the partonic frame), phi uniform.
Prior alpha_i = |M_i|^2 / sum_j |M_j|^2 over the channels' diagrams (single-diagram enhancement, summed
over flavours with PDFs). ``zprime_channel=False`` keeps the Z' in |M|^2 without a channel (benchmarks).

Event records (for LHE): the subprocess (flavours) is drawn proportionally to its contribution,
colour line 501 from the quark to the antiquark, no resonance line (MadEvent writes one only when the
event lies within bwcutoff widths of a BW-mapped propagator; we keep the record minimal), helicity 9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from madnis.integrand import Integrand, IntegrandResult

from ..lhe import EventRecords
from .pdf import PDF

GEV2_TO_PB = 3.8937937e8
QUARKS = (1, 2, 3, 4)  # d u s c
ELECTRON = 11


@dataclass(frozen=True)
class ElectroweakParameters:
    """MG5aMC ``sm`` inputs (restrict_default param_card) and the quantities the UFO derives from them."""

    aEWM1: float = 132.507
    Gf: float = 1.16639e-5
    MZ: float = 91.188
    WZ: float = 2.441404

    @property
    def alpha(self) -> float:
        return 1.0 / self.aEWM1

    @property
    def MW(self) -> float:
        mz2 = self.MZ**2
        return math.sqrt(mz2 / 2 + math.sqrt(mz2**2 / 4 - self.alpha * math.pi * mz2 / (self.Gf * math.sqrt(2))))

    @property
    def sw2(self) -> float:
        return 1 - self.MW**2 / self.MZ**2

    @property
    def ee(self) -> float:
        return 2 * math.sqrt(self.alpha) * math.sqrt(math.pi)

    def z_couplings(self, t3: float, charge: float) -> tuple[float, float]:
        """(g_L, g_R) of the Z to a fermion: e/(sw cw) (T3 - Q sw2), e/(sw cw) (-Q sw2)."""
        sw2 = self.sw2
        factor = self.ee / math.sqrt(sw2 * (1 - sw2))
        return factor * (t3 - charge * sw2), factor * (-charge * sw2)


@dataclass(frozen=True)
class ZPrime:
    """A narrow Z' with the Z's chiral couplings times ``coupling_scale`` (toy defaults, see module doc)."""

    mass: float = 400.0
    width: float = 2.0
    coupling_scale: float = 1.0


@dataclass(frozen=True)
class DrellYanSetup:
    """Collider, cuts and options of the built-in process (defaults = MG5aMC's default LO run_card)."""

    sqrt_s: float = 13000.0
    ptl: float = 10.0
    etal: float = 2.5
    drll: float = 0.4
    mmll: float = 0.0
    mmllmax: float = -1.0
    photon_nu: float = 2.0
    zprime: ZPrime | None = None
    zprime_channel: bool = True  # False: the Z' is in the matrix element but gets no channel (benchmarks)
    ew: ElectroweakParameters = field(default_factory=ElectroweakParameters)


def _fermion(pdg: int) -> tuple[float, float]:
    """(T3, Q) of the left-handed fermion with |pdg|."""
    a = abs(pdg)
    if a in (2, 4):
        return 0.5, 2.0 / 3.0
    if a in (1, 3):
        return -0.5, -1.0 / 3.0
    if a == 11:
        return -0.5, -1.0
    raise ValueError(f"no couplings for pdg {pdg}")


class DrellYan(Integrand):
    """p p -> e+ e- via gamma/Z(/Z'), one channel per propagator; see the module docstring."""

    ndim = 4
    has_prior = True
    n_features = 4
    channel_weights_trainable = True

    def __init__(self, setup: DrellYanSetup = DrellYanSetup(), pdf: PDF | None = None):
        self.setup = setup
        self.pdf = pdf if pdf is not None else PDF()
        self.s = setup.sqrt_s**2
        self.shat_min = max((2 * setup.ptl) ** 2, setup.mmll**2, 1e-6)
        self.shat_max = self.s if setup.mmllmax <= 0 else min(self.s, setup.mmllmax**2)
        ew = setup.ew
        # (name, mass, width, {pdg: (gL, gR)}); the photon has mass 0
        self.propagators: list[tuple[str, float, float, dict[int, tuple[float, float]]]] = [
            ("a", 0.0, 0.0, {p: (-ew.ee * _fermion(p)[1],) * 2 for p in QUARKS + (ELECTRON,)}),
            ("z", ew.MZ, ew.WZ, {p: ew.z_couplings(*_fermion(p)) for p in QUARKS + (ELECTRON,)}),
        ]
        if setup.zprime is not None:
            zp = setup.zprime
            self.propagators.append(
                (
                    "zp",
                    zp.mass,
                    zp.width,
                    {
                        p: tuple(zp.coupling_scale * g for g in ew.z_couplings(*_fermion(p)))
                        for p in QUARKS + (ELECTRON,)
                    },
                )
            )
        self.channel_propagators = [i for i, p in enumerate(self.propagators) if p[0] != "zp" or setup.zprime_channel]
        self.n_channels = len(self.channel_propagators)
        self.channel_names = [self.propagators[i][0] for i in self.channel_propagators]
        # subprocesses: (beam-1 parton, beam-2 parton), quark first then mirrored, as MG5aMC's P1_qq~_epem
        self.subprocesses = [(q, -q) for q in QUARKS] + [(-q, q) for q in QUARKS]

    # ---- matrix elements -------------------------------------------------------------------------
    def helicity_amplitudes(self, shat: torch.Tensor, quark: int) -> torch.Tensor:
        """(n, n_diagrams, 2, 2) complex A_k[h_q, h_l] such that M_k = s-hat A_k (1 +- cos) for h_q = h_l (-+)."""
        shat_c = shat.to(torch.complex128)
        out = []
        for _, mass, width, couplings in self.propagators:
            gq, gl = couplings[abs(quark)], couplings[ELECTRON]
            denominator = shat_c - mass**2 + 1j * mass * width
            coupling = torch.tensor(
                [[gq[0] * gl[0], gq[0] * gl[1]], [gq[1] * gl[0], gq[1] * gl[1]]], dtype=torch.complex128
            )
            out.append(coupling[None] / denominator[:, None, None])
        return torch.stack(out, dim=1)

    def matrix_elements(
        self, shat: torch.Tensor, cos_quark: torch.Tensor, quark: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spin- and colour-averaged |M|^2 for q q~ -> e+ e- (theta: quark to e-): (total (n,), per diagram (n, k))."""
        amps = self.helicity_amplitudes(shat, quark)
        same = ((1 + cos_quark) ** 2)[:, None]
        opposite = ((1 - cos_quark) ** 2)[:, None]
        angular = torch.stack([torch.stack([same, opposite], -1), torch.stack([opposite, same], -1)], -2)  # (n,1,2,2)
        norm = (shat * shat / 12.0)[:, None]
        total = (amps.sum(dim=1).abs() ** 2 * angular[:, 0]).sum(dim=(-1, -2)) * norm[:, 0]
        per_diagram = (amps.abs() ** 2 * angular).sum(dim=(-1, -2)) * norm
        return total, per_diagram

    # ---- phase space -----------------------------------------------------------------------------
    def _map_shat(self, r: torch.Tensor, channel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s-hat and d s-hat / d r for each point's channel."""
        lo, hi = self.shat_min, self.shat_max
        shat = torch.empty_like(r)
        jac = torch.empty_like(r)
        for c, propagator in enumerate(self.channel_propagators):
            _, mass, width, _ = self.propagators[propagator]
            mask = channel == c
            if not bool(mask.any()):
                continue
            rc = r[mask]
            if mass == 0.0:
                nu = self.setup.photon_nu
                a, b = lo ** (1 - nu), hi ** (1 - nu)
                s_c = (a + rc * (b - a)) ** (1 / (1 - nu))
                j_c = (b - a) / (1 - nu) * s_c**nu
            else:
                mg = mass * width
                t_lo, t_hi = math.atan((lo - mass**2) / mg), math.atan((hi - mass**2) / mg)
                s_c = mass**2 + mg * torch.tan(t_lo + rc * (t_hi - t_lo))
                j_c = (t_hi - t_lo) * ((s_c - mass**2) ** 2 + mg**2) / mg
            shat[mask] = s_c
            jac[mask] = j_c
        return shat, jac

    def _kinematics(self, r: torch.Tensor, channel: torch.Tensor) -> dict[str, torch.Tensor]:
        r = r.detach().to("cpu", torch.float64)  # the PDF grid lives on the CPU
        shat, jac_shat = self._map_shat(r[:, 0], channel.detach().cpu().long())
        shat = shat.clamp(self.shat_min, self.shat_max)
        tau = shat / self.s
        ymax = -0.5 * torch.log(tau)
        y = (2 * r[:, 1] - 1) * ymax
        cos = 2 * r[:, 2] - 1
        phi = 2 * math.pi * r[:, 3]
        sqrt_tau = torch.sqrt(tau)
        x1, x2 = sqrt_tau * torch.exp(y), sqrt_tau * torch.exp(-y)
        momenta = self._momenta(shat, y, cos, phi, x1, x2)
        jacobian = jac_shat / self.s * 2 * ymax * 4 * math.pi  # d tau, d y, d cos d phi
        return dict(shat=shat, y=y, cos=cos, phi=phi, x1=x1, x2=x2, momenta=momenta, jacobian=jacobian)

    def _momenta(self, shat, y, cos, phi, x1, x2) -> torch.Tensor:
        """(n, 4, 4) lab momenta (E, px, py, pz) in MG5aMC's order: parton 1, parton 2, e+, e-."""
        e_beam = self.setup.sqrt_s / 2
        half = torch.sqrt(shat) / 2
        sin = torch.sqrt((1 - cos * cos).clamp(min=0))
        em_cm = torch.stack([half, half * sin * torch.cos(phi), half * sin * torch.sin(phi), half * cos], -1)
        ep_cm = torch.stack([half, -em_cm[:, 1], -em_cm[:, 2], -em_cm[:, 3]], -1)
        ch, sh = torch.cosh(y)[:, None], torch.sinh(y)[:, None]

        def boost(p: torch.Tensor) -> torch.Tensor:
            e = ch[:, 0] * p[:, 0] + sh[:, 0] * p[:, 3]
            z = sh[:, 0] * p[:, 0] + ch[:, 0] * p[:, 3]
            return torch.stack([e, p[:, 1], p[:, 2], z], -1)

        zero = torch.zeros_like(x1)
        p1 = torch.stack([x1 * e_beam, zero, zero, x1 * e_beam], -1)
        p2 = torch.stack([x2 * e_beam, zero, zero, -x2 * e_beam], -1)
        return torch.stack([p1, p2, boost(ep_cm), boost(em_cm)], dim=1)

    def _passes_cuts(self, momenta: torch.Tensor) -> torch.Tensor:
        leptons = momenta[:, 2:]
        pt = torch.sqrt(leptons[..., 1] ** 2 + leptons[..., 2] ** 2)
        p = torch.sqrt(pt**2 + leptons[..., 3] ** 2)
        eta = 0.5 * torch.log((p + leptons[..., 3]) / (p - leptons[..., 3]).clamp(min=1e-300))
        ok = (pt > self.setup.ptl).all(dim=1) & (eta.abs() < self.setup.etal).all(dim=1)
        dphi = (
            torch.remainder(
                torch.atan2(leptons[:, 0, 2], leptons[:, 0, 1])
                - torch.atan2(leptons[:, 1, 2], leptons[:, 1, 1])
                + math.pi,
                2 * math.pi,
            )
            - math.pi
        )
        dr = torch.sqrt((eta[:, 0] - eta[:, 1]) ** 2 + dphi**2)
        return ok & (dr > self.setup.drll)

    def _subprocess_weights(self, k: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per subprocess: luminosity x |M|^2 (n, n_sub) and per diagram (n, n_sub, k)."""
        q = torch.sqrt(k["shat"])
        pids = sorted({p for pair in self.subprocesses for p in pair})
        f1 = self.pdf.xfxQ_many(pids, k["x1"], q) / k["x1"][:, None]
        f2 = self.pdf.xfxQ_many(pids, k["x2"], q) / k["x2"][:, None]
        index = {p: i for i, p in enumerate(pids)}
        totals, diagrams = [], []
        for a, b in self.subprocesses:
            cos_quark = k["cos"] if a > 0 else -k["cos"]
            total, per_diagram = self.matrix_elements(k["shat"], cos_quark, a)
            lumi = f1[:, index[a]] * f2[:, index[b]]
            totals.append(lumi * total)
            diagrams.append(lumi[:, None] * per_diagram)
        return torch.stack(totals, 1), torch.stack(diagrams, 1)

    # ---- Integrand interface ---------------------------------------------------------------------
    def evaluate(self, r: torch.Tensor, channel: torch.Tensor) -> IntegrandResult:
        dtype = r.dtype
        k = self._kinematics(r, channel)
        ok = self._passes_cuts(k["momenta"])
        per_sub, per_diagram = self._subprocess_weights(k)
        flux = GEV2_TO_PB / (2 * k["shat"]) / (32 * math.pi**2)
        value = torch.where(ok, per_sub.sum(1) * flux * k["jacobian"], torch.zeros_like(k["shat"]))
        diagram_sum = per_diagram.sum(1)[:, self.channel_propagators]
        alpha = diagram_sum / diagram_sum.sum(1, keepdim=True)
        features = torch.stack(
            [
                torch.log(k["shat"] / self.shat_min) / math.log(self.shat_max / self.shat_min),
                k["y"] / (-torch.log(k["shat"] / self.s)).clamp(min=1e-12) + 0.5,
                (k["cos"] + 1) / 2,
                k["phi"] / (2 * math.pi),
            ],
            dim=1,
        )
        return IntegrandResult(
            value=value.to(dtype),
            alpha_prior=alpha.to(dtype),
            ok=torch.isfinite(value),
            features=features.to(dtype),
            momenta=k["momenta"].to(dtype),
        )

    # ---- events ----------------------------------------------------------------------------------
    def event_records(self, r: torch.Tensor, channel: torch.Tensor, generator: np.random.Generator) -> EventRecords:
        """LHE records for points (r, channel): flavours drawn by contribution, colour, scale, couplings."""
        k = self._kinematics(r, channel)
        per_sub, _ = self._subprocess_weights(k)
        n = per_sub.shape[0]
        cumulative = torch.cumsum(per_sub, 1)
        u = torch.from_numpy(generator.random(n)) * cumulative[:, -1]
        choice = torch.searchsorted(cumulative, u[:, None]).clamp(max=len(self.subprocesses) - 1)[:, 0].numpy()
        beams = np.array(self.subprocesses)[choice]  # (n, 2)
        records = EventRecords.empty(n, 4)
        records.nup[:] = 4
        records.pdg[:, :2] = beams
        records.pdg[:, 2] = -ELECTRON
        records.pdg[:, 3] = ELECTRON
        records.status[:] = [-1, -1, 1, 1]
        records.mothers[:, 2:] = [1, 2]
        quark_first = beams[:, 0] > 0
        records.color[:, 0] = np.where(quark_first[:, None], [501, 0], [0, 501])
        records.color[:, 1] = np.where(quark_first[:, None], [0, 501], [501, 0])
        p = k["momenta"].numpy()
        records.momenta[..., :3] = p[..., 1:]
        records.momenta[..., 3] = p[..., 0]
        records.momenta[..., 4] = 0.0
        records.helicity[:] = 9.0
        scale = torch.sqrt(k["shat"])
        records.scale[:] = scale.numpy()
        records.aqcd[:] = self.pdf.alphas(scale).numpy()
        records.aqed[:] = self.setup.ew.alpha
        records.subprocess[:] = 1
        return records


def prior_multichannel(integrand: Integrand, r: torch.Tensor) -> torch.Tensor:
    """sum_i alpha_i^prior(x_i(r)) f(x_i(r)) J_i(r): one function of r whose integral is sigma (for VEGAS references)."""
    total = torch.zeros(r.shape[0], dtype=torch.float64)
    for c in range(integrand.n_channels):
        result = integrand(r, torch.full((r.shape[0],), c))
        total += result.alpha_prior[:, c].double() * result.value.double()
    return total
