"""``recycle_helicities`` without helicity recycling: the survey's other branch (no MG5aMC needed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from madnis_plugin.mg5.helicities import recycle_helicities


class NoMadEvent:
    """A MadEventCmd class whose module has no gen_ximprove: calling it would fail the test."""


def test_without_recycling_the_original_serves_as_the_optimised_matrix_element(tmp_path):
    pdir = tmp_path / "P1_gg_ttxg"
    pdir.mkdir()
    (pdir / "matrix1_orig.f").write_text("      SUBROUTINE SMATRIX1(P,ANS)\n")
    (pdir / "matrix1_orig.o").write_bytes(b"object")
    (pdir / "matrix1_optim.f").write_text("stale: recycled in an earlier run\n")
    cmd = SimpleNamespace(
        proc_characteristics={"hel_recycling": True},
        run_card={"hel_recycling": False},
        get_Pdir=lambda: [str(pdir)],
    )
    recycle_helicities(cmd, NoMadEvent)
    assert (pdir / "matrix1_optim.f").read_text() == (pdir / "matrix1_orig.f").read_text()
    assert (pdir / "matrix1_optim.o").read_bytes() == b"object"


def test_an_output_without_recycled_code_copies_the_original(tmp_path):
    """``proc_characteristics`` says the output has no recycling support: the card's entry does not matter."""
    pdir = tmp_path / "P1_qq_ll"
    pdir.mkdir()
    (pdir / "matrix2_orig.f").write_text("      SUBROUTINE SMATRIX2(P,ANS)\n")
    cmd = SimpleNamespace(
        proc_characteristics={"hel_recycling": False},
        run_card={"hel_recycling": True},
        get_Pdir=lambda: [str(pdir)],
    )
    recycle_helicities(cmd, NoMadEvent)
    assert Path(pdir / "matrix2_optim.f").read_text() == "      SUBROUTINE SMATRIX2(P,ANS)\n"
    assert not (pdir / "matrix2_optim.o").exists()
