"""The scale channel of MadEvent's ``dynamical_scale_choice = -1``: drawn from alpha, so the integrand is the point's.

MadEvent clusters the scale with the diagram of the channel that generated the point, so its integral is
``sum_k int sum_i alpha_ki f_ki``. The bridge draws channel i with probability alpha_ki at each point and returns
f_ki (``fortran_bridge/madnis_bridge.f``, ``madnis_draw_scale``): the value is then the same function of the point
in every channel, and channel weights can be learned. The exactness of the draw is checked by the integrals of
``test_bridge_mg5.py`` (``g g > t t~ g``, flat, and ``g g > w+ d u~ g``, VEGAS) and ``test_bridge_symmetry_mg5.py``
(``u u~ > g g``, 0.15 %) against MadEvent. Not tested here: the probe's refusal for mixed coupling orders (the
bridge cannot evaluate ``u u~ > d d~ g QED<=2`` at all: SIGSEGV in MadEvent's code, also before this change).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fortran_bridge import Draws, ProcessLibrary

sys.path.insert(0, str(Path(__file__).parent))
from test_bridge_mg5 import generate  # noqa: E402

pytestmark = pytest.mark.mg5

PROCESS = "u u~ > d d~ g"


@pytest.fixture(scope="module")
def libraries(mg5_dir, tmp_path_factory):
    """The same P-dir with the scale channel drawn (the default) and with the generating channel's scale."""
    pdir = generate(mg5_dir, tmp_path_factory.mktemp("bridge_scale_channel"), ["qcd"], {"qcd": PROCESS})["qcd"]
    opened = {
        "drawn": ProcessLibrary(pdir, workers=1),
        "generating": ProcessLibrary(pdir, workers=1, draws=Draws(scale_channel=False)),
    }
    yield opened
    for library in opened.values():
        library.close()


def test_the_integrand_depends_on_the_channel_only_without_the_draw(libraries):
    assert not libraries["drawn"].info.scale_depends_on_channel
    assert libraries["generating"].info.scale_depends_on_channel


def test_drawn_scale_channel_is_a_fixed_function_of_the_point(libraries):
    """Same point, same draw: in any batch and any order (the event record draws it again from the point)."""
    library = libraries["drawn"]
    info = library.info
    rng = np.random.default_rng(5)
    channel, r = rng.integers(0, info.n_channels, 3000), rng.random((3000, info.ndim))
    first = library.evaluate(channel, r)
    order = rng.permutation(3000)
    again = library.evaluate(channel[order], r[order])
    np.testing.assert_array_equal(again.value, first.value[order])
    np.testing.assert_array_equal(again.alpha, first.alpha[order])
    assert (first.status == 0).mean() > 0.03  # status 0: inside the cuts, where the value is not 0
    np.testing.assert_array_equal(first.status == 0, first.value != 0)
    np.testing.assert_allclose(first.alpha[first.status == 0].sum(axis=1), 1.0, rtol=0, atol=1e-12)
