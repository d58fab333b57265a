"""``recycle_helicities`` without helicity recycling: the survey's other branch (no MG5aMC needed)."""

from __future__ import annotations

from types import SimpleNamespace

from madnis_plugin.mg5.helicities import recycle_helicities


class NoMadEvent:
    """A MadEventCmd class whose module has no gen_ximprove: calling it would fail the test."""


def madevent(pdir, output_recycles: bool, card_recycles: bool) -> SimpleNamespace:
    """The parts of a MadEvent command the survey's choice reads: the output's and the run_card's hel_recycling."""
    return SimpleNamespace(
        proc_characteristics={"hel_recycling": output_recycles},
        run_card={"hel_recycling": card_recycles},
        get_Pdir=lambda: [str(pdir)],
    )


def test_without_recycling_the_original_serves_as_the_optimised_matrix_element(tmp_path):
    pdir = tmp_path / "P1_gg_ttxg"
    pdir.mkdir()
    (pdir / "matrix1_orig.f").write_text("      SUBROUTINE SMATRIX1(P,ANS)\n")
    (pdir / "matrix1_orig.o").write_bytes(b"object")
    (pdir / "matrix1_optim.f").write_text("stale: recycled in an earlier run\n")
    recycle_helicities(madevent(pdir, output_recycles=True, card_recycles=False), NoMadEvent)
    assert (pdir / "matrix1_optim.f").read_text() == (pdir / "matrix1_orig.f").read_text()
    assert (pdir / "matrix1_optim.o").read_bytes() == b"object"


def test_an_output_without_recycled_code_copies_the_original(tmp_path):
    """``proc_characteristics`` says the output has no recycling support: the card's entry does not matter."""
    pdir = tmp_path / "P1_qq_ll"
    pdir.mkdir()
    (pdir / "matrix2_orig.f").write_text("      SUBROUTINE SMATRIX2(P,ANS)\n")
    recycle_helicities(madevent(pdir, output_recycles=False, card_recycles=True), NoMadEvent)
    assert (pdir / "matrix2_optim.f").read_text() == "      SUBROUTINE SMATRIX2(P,ANS)\n"
    assert not (pdir / "matrix2_optim.o").exists()
