"""The built-in LHAPDF6 grid reader against real LHAPDF 6.5.5 numbers, and MadEvent's alpha_s running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from madnis_plugin.builtin.pdf import PDF, LHAGrid, alphas_mg5, find_grid

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pdf_NNPDF23_lo_as_0130_qed_lhapdf655.json"


@pytest.fixture(scope="module")
def grid() -> LHAGrid:
    try:
        return LHAGrid(find_grid())
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_matches_lhapdf_655_to_1e12(grid):
    if not REFERENCE.exists():
        pytest.skip(f"reference file {REFERENCE} absent")
    points = json.loads(REFERENCE.read_text())["points"]
    x = torch.tensor([p["x"] for p in points], dtype=torch.float64)
    q = torch.tensor([p["Q"] for p in points], dtype=torch.float64)
    for pid in points[0]["xf"]:
        reference = torch.tensor([p["xf"][pid] for p in points], dtype=torch.float64)
        ours = grid.xfxQ(int(pid), x, q)
        relative = (ours - reference).abs() / reference.abs().clamp(min=1e-300)
        assert relative.max() < 1e-12, f"pid {pid}: max relative deviation {relative.max():.2e}"


def test_grid_knots_are_reproduced_and_gluon_alias(grid):
    x = grid.xs[10:60:7].contiguous()
    q = torch.sqrt(grid.q2s[5:12])[: x.numel()]
    x = x[: q.numel()]
    column = grid.flavour_index(21)
    ix = torch.searchsorted(grid.xs, x)
    iq = torch.searchsorted(grid.q2s, q * q)
    assert torch.allclose(grid.xfxQ(21, x, q), grid.xf[ix, iq, column], rtol=1e-13)
    assert torch.equal(grid.xfxQ(0, x, q), grid.xfxQ(21, x, q))
    assert torch.equal(grid.xfxQ(7, x, q), torch.zeros_like(x))


def test_out_of_range_is_nearest_point(grid):
    q = torch.tensor([50.0, 2e4])
    x = torch.tensor([1e-12, 0.3])
    edge = grid.xfxQ(2, torch.tensor([grid.x_range[0], 0.3]), torch.tensor([50.0, grid.q_range[1]]))
    assert torch.allclose(grid.xfxQ(2, x, q), edge, rtol=1e-14)


def test_alphas_matches_madevent_running():
    a = alphas_mg5(torch.tensor([91.188, 10.0, 1000.0, 3.0], dtype=torch.float64))
    assert a[0].item() == pytest.approx(0.130, rel=1e-12)
    assert a[2] < a[0] < a[1] < a[3]  # asymptotic freedom across the b threshold
    # two-loop, nf=5 from MZ: 1/alpha(Q) grows by ~ b0 * log(Q^2/MZ^2) (one-loop part dominates)
    one_loop = 0.130 / (1 + 0.130 * 0.61009394851893 * 2 * torch.log(torch.tensor(1000.0 / 91.188)))
    assert a[2].item() == pytest.approx(one_loop.item(), rel=0.05)
    assert PDF().alphas(torch.tensor([91.188], dtype=torch.float64)).item() == pytest.approx(0.130)


def test_subgrids_are_interpolated_separately(tmp_path):
    """Two Q subgrids sharing the knot Q = 4: points below it only see the lower subgrid, as in LHAPDF."""
    xs = [1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0]
    lower_q, upper_q = [1.0, 2.0, 3.0, 4.0], [4.0, 6.0, 8.0, 10.0]

    def block(qs, offset):
        rows = "\n".join(f"{1 + x + offset:.6e} {2 * x + offset:.6e}" for x in xs for _ in qs)
        return " ".join(map(str, xs)) + "\n" + " ".join(map(str, qs)) + "\n21 2\n" + rows + "\n---\n"

    path = tmp_path / "toy_0000.dat"
    path.write_text("PdfType: central\nFormat: lhagrid1\n---\n" + block(lower_q, 0.0) + block(upper_q, 100.0))
    grid = LHAGrid(path)
    x = torch.tensor([0.05, 0.05, 0.05], dtype=torch.float64)
    q = torch.tensor([3.9, 4.0, 4.1], dtype=torch.float64)
    gluon = grid.xfxQ(21, x, q)
    assert gluon[0] < 2 and gluon[1] > 100 and gluon[2] > 100  # Q = 4 belongs to the upper subgrid
    assert torch.equal(grid.xfxQ(2, x, q), grid.xfxQ2_all(x, q * q)[:, 1])
