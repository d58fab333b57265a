"""MadEvent's helicity recycling before the bridge libraries are built, as its survey does it.

Why: an ``output madnis`` P-dir holds ``matrix*_orig.f``, the matrix element summed over every helicity. Stock
MadEvent's survey first finds the helicities that contribute (``madevent_forhel`` on 1000 points) and writes
``matrix*_optim.f``, which sums those alone and recycles wave functions between them (MG5aMC's
``gen_ximprove.gensym.get_helicity`` and ``hel_recycle``); with ``hel_recycling = False`` it copies the original
instead. The bridge compiles ``matrix*_optim`` where it exists (``fortran_bridge/madnis_bridge.mk``), so MadNIS
evaluates the same matrix element as stock MadEvent at the same cost: per point inside the cuts 30 instead of 78 us
on ``g g > w+ d u~ g``, 17 instead of 45 us on ``g g > t t~ g``, values equal to 1e-14
(benchmarks/results/helicity_recycling.md).

On by default (run_card ``madnis_recycle_helicities``; False sums every helicity). It was opt-in while W+2j launches
with it came out low (mean pull -0.74 over 10 launches): with 2.6x cheaper points ``madnis_steps = auto`` trains less,
the weight tail is heavier, and the generation chunks then diluted their outliers (their w_max re-derived from their
own points). With the points drawn for events following a plan fixed before them and the stages pooled by size
(:mod:`madnis_plugin.run.sample`), 8 recycled W+2j launches gave mean pull +0.10, sd 0.82
(benchmarks/results/launch_pulls_wjj_recycled_plan.md).

One P-dir after the other, as MadEvent's survey does it, on purpose: MadEvent's ``hel_recycle`` is not thread-safe
(``get_helicity`` of 3 P-dirs in 2 threads wrote a ``g g > t t~ g`` matrix element with NWAVEFUNCS=32 instead of 74,
and its launch quoted 4.6e10 pb), and the P-dirs' compilations already fill the cores (``make -j``): 8.6 s against
8.9 s on ``p p > t t~ j`` (benchmarks/results/stop47_measurements.md section 3).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any


def recycle_helicities(cmd: Any, madevent_class: type) -> None:
    """Write every P-dir's ``matrix*_optim.f`` as MadEvent's survey does (``cmd``: the launch's MadEvent command,
    ``madevent_class`` its MadEventCmd class, whose module imported MadEvent's ``gen_ximprove``)."""
    if cmd.proc_characteristics["hel_recycling"] and cmd.run_card["hel_recycling"]:
        sys.modules[madevent_class.__module__].gen_ximprove.gensym(cmd).get_helicity()
        return
    for pdir in cmd.get_Pdir():  # the survey's other branch: the original, under the optimised name
        for original in Path(pdir).glob("matrix*_orig.f"):
            for source in (original, original.with_suffix(".o")):
                if source.is_file():
                    shutil.copy(source, source.with_name(source.name.replace("_orig", "_optim")))
