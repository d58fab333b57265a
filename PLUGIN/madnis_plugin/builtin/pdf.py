"""Parton densities without LHAPDF: a batched torch reader of LHAPDF6 ``lhagrid1`` files.

Why: MG5aMC's default PDF (``nn23lo1`` = NNPDF23_lo_as_0130_qed) must be available to the built-in
Drell-Yan process on machines without LHAPDF. The grid ships with the ``pythia8mc`` wheel.

Interpolation is LHAPDF 6.4/6.5's ``LogBicubicInterpolator`` reproduced operation by operation:
- per-(x, Q2, flavour) cubic coefficients in ``log x`` from Hermite end-point values and derivatives,
  the derivative at a knot being the mean of the left and right finite differences in ``log x``
  (one-sided at the first and last x knot);
- in ``log Q2`` a cubic Hermite spline through the x-interpolated values at iq2-1..iq2+2 with the same
  central/one-sided difference rule, where a subgrid edge (first/last knot, or a repeated Q knot
  between subgrids) counts as an edge; a subgrid with only two Q knots falls back to log-bilinear.
Subgrids are concatenated with their shared boundary knots repeated, as LHAPDF's KnotArray does;
a Q exactly on a boundary uses the upper subgrid.

Out of the grid range we use nearest-point extrapolation (x and Q clamped to the grid edge), i.e.
LHAPDF's ``NearestPointExtrapolator``; LHAPDF's "continuation" extrapolator is not reproduced. The
built-in Drell-Yan process never leaves the grid (x >= 1e-9, 1 <= Q <= 1e4 GeV here).

alpha_s: :func:`alphas_mg5` is MadEvent's own running (Source/alfas_functions.f, R.K. Ellis' Newton
solution, 2 loops, c/b thresholds 1.42/4.7 GeV), which is what MadEvent uses with ``nn23lo1``
(pdfwrap.f sets asmz = 0.130 and keeps nloop = 2). The grid's .info AlphaS table is not used.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

DEFAULT_SET = "NNPDF23_lo_as_0130_qed"
LHAPDF_ID = {"NNPDF23_lo_as_0130_qed": 247000}


def find_grid(set_name: str = DEFAULT_SET, member: int = 0, path: str | os.PathLike | None = None) -> Path:
    """Locate ``<set>_<member:04d>.dat``: explicit path, LHAPDF_DATA_PATH, LHAPDF's own path, pythia8mc."""
    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise FileNotFoundError(f"PDF grid file {found} does not exist")
        return found
    name = f"{set_name}_{member:04d}.dat"
    candidates: list[Path] = []
    for env in ("LHAPDF_DATA_PATH", "LHAPATH"):
        for entry in os.environ.get(env, "").split(os.pathsep):
            if entry:
                candidates += [Path(entry) / set_name / name, Path(entry) / name]
    try:
        import pythia8mc  # noqa: F401  (only its data directory is used)

        site = Path(pythia8mc.__file__).resolve().parent
        candidates += [p / "share" / "Pythia8" / "pdfdata" / name for p in site.parents]
    except ImportError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"PDF grid {name} not found (set LHAPDF_DATA_PATH or install pythia8mc)")


class LHAGrid:
    """One member of an LHAPDF6 grid set, evaluated in batches: ``xfxQ(pid, x, Q)`` = x f(x, Q)."""

    def __init__(self, path: str | os.PathLike, dtype: torch.dtype = torch.float64):
        self.path = Path(path)
        xs, qs, pids, blocks = _read_lhagrid1(self.path)
        self.pids = pids
        self.dtype = dtype
        self.xs = torch.tensor(xs, dtype=dtype)
        self.q2s = torch.tensor(np.asarray(qs) * np.asarray(qs), dtype=dtype)
        self.logxs = torch.log(self.xs)
        self.logq2s = torch.log(self.q2s)
        grid = np.concatenate(blocks, axis=1)  # (nx, nq2, nflav)
        self.xf = torch.tensor(grid, dtype=dtype)
        self.coeffs = self._x_coefficients()  # (nx-1, nq2, nflav, 4)

    def _x_coefficients(self) -> torch.Tensor:
        """Cubic coefficients (a, b, c, d) in t = (log x - log x_i) / dlogx, as LHAPDF's GridPDF computes them."""
        xf, logxs = self.xf, self.logxs
        dl = logxs[1:] - logxs[:-1]  # (nx-1,)
        diff = (xf[1:] - xf[:-1]) / dl[:, None, None]  # one-sided derivatives between knots
        ddx = torch.empty_like(xf)
        ddx[0] = diff[0]
        ddx[-1] = diff[-1]
        ddx[1:-1] = (diff[:-1] + diff[1:]) / 2.0
        vl, vh = xf[:-1], xf[1:]
        vdl = ddx[:-1] * dl[:, None, None]
        vdh = ddx[1:] * dl[:, None, None]
        a = vdh + vdl - 2 * vh + 2 * vl
        b = 3 * vh - 3 * vl - 2 * vdl - vdh
        return torch.stack([a, b, vdl, vl], dim=-1)

    @property
    def x_range(self) -> tuple[float, float]:
        return float(self.xs[0]), float(self.xs[-1])

    @property
    def q_range(self) -> tuple[float, float]:
        return math.sqrt(float(self.q2s[0])), math.sqrt(float(self.q2s[-1]))

    def flavour_index(self, pid: int) -> int | None:
        """Column of ``pid`` in the grid (0 means gluon), None if the set lacks it."""
        pid = 21 if pid == 0 else pid
        return self.pids.index(pid) if pid in self.pids else None

    def xfxQ2_all(self, x: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
        """x f for all grid flavours: (n, nflav), in ``self.pids`` order."""
        x = x.to(self.dtype).clamp(self.xs[0], self.xs[-1])
        q2 = q2.to(self.dtype).clamp(self.q2s[0], self.q2s[-1])
        nx, nq = self.xs.numel(), self.q2s.numel()
        ix = (torch.searchsorted(self.xs, x, right=True) - 1).clamp(0, nx - 2)
        iq = (torch.searchsorted(self.q2s, q2, right=True) - 1).clamp(0, nq - 2)
        logx, logq2 = torch.log(x), torch.log(q2)
        dlogx_1 = self.logxs[ix + 1] - self.logxs[ix]
        tlogx = (logx - self.logxs[ix]) / dlogx_1
        iqm = (iq - 1).clamp(min=0)
        iqp2 = (iq + 2).clamp(max=nq - 1)
        dlogq_0 = 1.0 / (self.logq2s[iq] - self.logq2s[iqm])
        dlogq_1 = self.logq2s[iq + 1] - self.logq2s[iq]
        dlogq_2 = 1.0 / (self.logq2s[iqp2] - self.logq2s[iq + 1])
        tlogq = (logq2 - self.logq2s[iq]) / dlogq_1
        q2_lower = (iq == 0) | (self.q2s[iq] == self.q2s[iqm])
        q2_upper = (iq + 1 == nq - 1) | (self.q2s[iq + 1] == self.q2s[iqp2])

        t = tlogx[:, None]

        def cubic_in_x(iq_: torch.Tensor) -> torch.Tensor:
            c = self.coeffs[ix, iq_]  # (n, nflav, 4)
            t2 = t * t
            t3 = t2 * t
            return c[..., 0] * t3 + c[..., 1] * t2 + c[..., 2] * t + c[..., 3]

        vl, vh = cubic_in_x(iq), cubic_in_x(iq + 1)
        vll, vhh = cubic_in_x(iqm), cubic_in_x(iqp2)
        d1, d0, d2 = dlogq_1[:, None], dlogq_0[:, None], dlogq_2[:, None]
        lower, upper = q2_lower[:, None], q2_upper[:, None]
        central_l = ((vh - vl) + (vl - vll) * d1 * d0) * 0.5
        central_h = ((vh - vl) + (vhh - vh) * d1 * d2) * 0.5
        vdl = torch.where(lower, vh - vl, central_l)  # forward difference at a lower edge
        vdh = torch.where(upper, vh - vl, central_h)  # backward difference at an upper edge
        tq = tlogq[:, None]
        tq2 = tq * tq
        tq3 = tq * tq2
        cubic = (
            (2 * tq3 - 3 * tq2 + 1) * vl + (tq3 - 2 * tq2 + tq) * vdl + (-2 * tq3 + 3 * tq2) * vh + (tq3 - tq2) * vdh
        )
        # Two-knot subgrid: LHAPDF's log-bilinear fallback.
        lx0, lx1 = self.logxs[ix][:, None], self.logxs[ix + 1][:, None]
        f_ql = self.xf[ix, iq] + (logx[:, None] - lx0) / (lx1 - lx0) * (self.xf[ix + 1, iq] - self.xf[ix, iq])
        f_qh = self.xf[ix, iq + 1] + (logx[:, None] - lx0) / (lx1 - lx0) * (
            self.xf[ix + 1, iq + 1] - self.xf[ix, iq + 1]
        )
        lq0, lq1 = self.logq2s[iq][:, None], self.logq2s[iq + 1][:, None]
        linear = f_ql + (logq2[:, None] - lq0) / (lq1 - lq0) * (f_qh - f_ql)
        return torch.where(lower & upper, linear, cubic)

    def xfxQ(self, pid: int, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """x f_pid(x, Q) for a batch; 0 for a flavour the set does not have."""
        column = self.flavour_index(pid)
        if column is None:
            return torch.zeros_like(x, dtype=self.dtype)
        return self.xfxQ2_all(x, q.to(self.dtype) * q.to(self.dtype))[:, column]


def _read_lhagrid1(path: Path) -> tuple[list[float], list[float], list[int], list[np.ndarray]]:
    """Parse an ``lhagrid1`` file: shared x knots, concatenated Q knots, flavour ids, one array per subgrid."""
    text = path.read_text()
    blocks = [b for b in text.split("\n---")[1:] if b.strip()]
    if "lhagrid1" not in text.split("\n---")[0]:
        raise ValueError(f"{path}: not an LHAPDF 'lhagrid1' file")
    xs: list[float] = []
    qs: list[float] = []
    pids: list[int] = []
    grids = []
    for block in blocks:
        lines = [ln for ln in block.strip().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        bx = [float(v) for v in lines[0].split()]
        bq = [float(v) for v in lines[1].split()]
        bp = [int(v) for v in lines[2].split()]
        if xs and (bx != xs or bp != pids):
            raise ValueError(f"{path}: subgrids with different x knots or flavours are not supported")
        xs, pids = bx, bp
        values = np.array(" ".join(lines[3:]).split(), dtype=np.float64)
        if values.size != len(bx) * len(bq) * len(bp):
            raise ValueError(f"{path}: subgrid has {values.size} values, expected {len(bx) * len(bq) * len(bp)}")
        qs += bq
        grids.append(values.reshape(len(bx), len(bq), len(bp)))
    if not grids:
        raise ValueError(f"{path}: no data blocks")
    return xs, qs, pids, grids


# MadEvent's alfas_functions.f constants (nf = 3, 4, 5).
_B0 = {3: 0.716197243913527, 4: 0.66314559621623, 5: 0.61009394851893}
_C1 = {3: 0.565884242104515, 4: 0.49019722472304, 5: 0.40134724779695}
_CMASS, _BMASS, _ZMASS = 1.42, 4.7, 91.188


def _newton1(t: torch.Tensor, a_in: torch.Tensor, nloop: int, nf: int) -> torch.Tensor:
    """MadEvent's NEWTON1: evolve alpha_s over t = log(Q^2/Q0^2) at ``nloop`` (1 or 2) loops."""
    b0, c1 = _B0[nf], _C1[nf]
    a_out = a_in / (1 + a_in * b0 * t)
    if nloop == 1:
        return a_out

    def f2(a: torch.Tensor) -> torch.Tensor:
        return 1 / a + c1 * torch.log((c1 * a) / (1 + c1 * a))

    a_out = a_in / (1 + b0 * a_in * t + c1 * a_in * torch.log(1 + a_in * b0 * t))
    a_out = torch.where(a_out < 0, torch.full_like(a_out, 0.3), a_out)
    done = torch.zeros_like(a_out, dtype=torch.bool)
    for _ in range(50):  # Fortran iterates each point until |delta| <= 5e-4, then one more update
        a = a_out
        f = b0 * t + f2(a_in) - f2(a)
        fp = 1 / (a * a * (1 + c1 * a))
        new = a - f / fp
        a_out = torch.where(done, a_out, new)
        done = done | (torch.abs(f / fp / a) <= 5e-4)
        if bool(done.all()):
            break
    return a_out


def alphas_mg5(q: torch.Tensor, asmz: float = 0.130, nloop: int = 2) -> torch.Tensor:
    """alpha_s(Q) exactly as MadEvent's ``alphas`` (alfas_functions.f) with the nn23lo1 settings."""
    q = q.to(torch.float64)
    asmz_t = torch.tensor(asmz, dtype=torch.float64)
    amb = _newton1(torch.tensor(2 * math.log(_BMASS / _ZMASS), dtype=torch.float64), asmz_t, nloop, 5)
    amc = _newton1(torch.tensor(2 * math.log(_CMASS / _BMASS), dtype=torch.float64), amb, nloop, 4)
    nf5 = _newton1(2 * torch.log(q / _ZMASS), asmz_t.expand_as(q), nloop, 5)
    nf4 = _newton1(2 * torch.log(q / _BMASS), amb.expand_as(q), nloop, 4)
    nf3 = _newton1(2 * torch.log(q / _CMASS), amc.expand_as(q), nloop, 3)
    return torch.where(q < _BMASS, torch.where(q < _CMASS, nf3, nf4), nf5)


class PDF:
    """A PDF member plus its alpha_s: real ``lhapdf`` when importable, else :class:`LHAGrid`."""

    def __init__(
        self,
        set_name: str = DEFAULT_SET,
        member: int = 0,
        path: str | os.PathLike | None = None,
        asmz: float = 0.130,
        use_lhapdf: bool = True,
    ):
        self.set_name = set_name
        self.asmz = asmz
        self._lhapdf = None
        self.grid: LHAGrid | None = None
        if use_lhapdf and path is None:
            try:
                import lhapdf  # type: ignore

                lhapdf.setVerbosity(0)
                self._lhapdf = lhapdf.mkPDF(set_name, member)
            except Exception:  # not installed, or the set is not in its path
                self._lhapdf = None
        if self._lhapdf is None:
            self.grid = LHAGrid(find_grid(set_name, member, path))

    @property
    def lhapdf_id(self) -> int:
        return LHAPDF_ID.get(self.set_name, 0)

    def xfxQ(self, pid: int, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.grid is not None:
            return self.grid.xfxQ(pid, x, q)
        values = [self._lhapdf.xfxQ(pid, float(a), float(b)) for a, b in zip(x.tolist(), q.tolist())]
        return torch.tensor(values, dtype=torch.float64)

    def xfxQ_many(self, pids: list[int], x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """(n, len(pids)) x f for several flavours at once (one interpolation pass)."""
        if self.grid is None:
            return torch.stack([self.xfxQ(p, x, q) for p in pids], dim=1)
        table = self.grid.xfxQ2_all(x, q.to(torch.float64) ** 2)
        columns = [self.grid.flavour_index(p) for p in pids]
        zero = torch.zeros_like(table[:, 0])
        return torch.stack([table[:, c] if c is not None else zero for c in columns], dim=1)

    def alphas(self, q: torch.Tensor) -> torch.Tensor:
        """alpha_s(Q) as MadEvent computes it for this PDF (see module docstring)."""
        return alphas_mg5(q, self.asmz)
