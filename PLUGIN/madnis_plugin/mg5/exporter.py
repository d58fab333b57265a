"""``output madnis DIR``: a complete MadEvent directory plus the MadNIS run_card block and launch hook.

The exporter is MadEvent's grouped exporter (same P-dirs, channels, Source, model, cards). MG5aMC 3.5
treats plugin outputs as format ``plugin``, so what ``do_output`` does only for ``madevent`` is redone
here: ``export_format = 'madevent'`` for the model, the helicity-recycling ALOHA variants, the beam
polarisation scan, ``Cards/me5_configuration.txt``. Then the run_card gets the ``madnis`` block,
``bin/internal`` the hook that routes ``generate_events`` to MadNIS when ``madnis = True``, and the directory the
guards that keep a plain ``mg5_aMC`` session's ``launch`` from running stock MadEvent in its place.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import madgraph
import madgraph.core.base_objects as base_objects
import madgraph.core.helas_objects as helas_objects
import madgraph.iolibs.export_v4 as export_v4
import madgraph.iolibs.group_subprocs as group_subprocs

from ..settings import MadnisSettings, card_block
from .madevent_hook import install_in_output

logger = logging.getLogger("madgraph.madnis")

MARKER = Path("madnis") / "README"
GROUPING_NEEDED = "output madnis needs grouped subprocesses: set group_subprocesses Auto (or True)"


class MadnisExporter(export_v4.ProcessExporterFortranMEGroup):
    """MadEvent's grouped exporter + MadNIS block and hook (``output madnis DIR``)."""

    check = True
    exporter = "v4"
    output = "Template"
    sa_symmetry = False
    grouped_mode = "madevent"

    def __init__(self, dir_path: str = "", opt: dict | None = None):
        opt = dict(opt or {})
        opt["export_format"] = "madevent"  # model/Source are written as for MadEvent (plugin would break Source)
        super().__init__(dir_path, opt)
        self._cmd = None

    def pass_information_from_cmd(self, cmd) -> None:
        if cmd.options["group_subprocesses"] is False:  # refuse before the template is copied
            raise madgraph.InvalidCmd(GROUPING_NEEDED)
        super().pass_information_from_cmd(cmd)
        self._cmd = cmd
        self.opt["madanalysis5"] = cmd.options["madanalysis5_path"]
        # do_output sets these only for the 'madevent' format
        if cmd.options["max_npoint_for_channel"]:
            base_objects.Vertex.max_n_loop_for_multichanneling = int(cmd.options["max_npoint_for_channel"])
        else:
            base_objects.Vertex.max_n_loop_for_multichanneling = 3
        base_objects.Vertex.max_tpropa = int(cmd.options["max_t_for_channel"])

    def modify_grouping(self, matrix_elements):
        """Scan the beams' polarisation support as ``export_processes`` does for MadEvent; keep the grouping."""
        if not isinstance(matrix_elements, group_subprocs.SubProcessGroupList):
            raise madgraph.InvalidCmd(GROUPING_NEEDED)
        for group in matrix_elements:
            for me in group.get("matrix_elements"):
                for process in me.get("processes"):
                    for beam in (1, 2):
                        for pdg in process.get_initial_ids(beam):
                            if process.get("model").get_particle(pdg).get("spin") != 2:
                                self.beam_polarization[beam - 1] = False
        return False, matrix_elements

    def generate_subprocess_directory(self, subproc_group, fortran_model, me=None):
        if isinstance(subproc_group, helas_objects.HelasMatrixElement):
            raise madgraph.InvalidCmd(GROUPING_NEEDED)
        return super().generate_subprocess_directory(subproc_group, fortran_model, me)

    def convert_model(self, model, wanted_lorentz=(), wanted_couplings=()):
        """Add the ALOHA variants helicity recycling needs (``do_output`` does it for 'madevent' only)."""
        wanted_lorentz = list(wanted_lorentz)
        if self.opt.get("hel_recycling"):
            for name, flag, out in list(wanted_lorentz):
                if out == 0:
                    wanted_lorentz.append((name, tuple(flag) + ("P1N",), -1))
        super().convert_model(model, wanted_lorentz, list(wanted_couplings))

    def finalize(self, matrix_elements, history, mg5options, flaglist):
        self._write_me5_configuration()
        super().finalize(matrix_elements, history, mg5options, flaglist)
        self._add_madnis_block()
        install_in_output(Path(self.dir_path))
        marker = Path(self.dir_path) / MARKER
        marker.parent.mkdir(exist_ok=True)
        marker.write_text(
            "Written by `output madnis`: the trained sampler of each P-dir is saved here as P*.madnis.pt;\n"
            "madnis_reuse = True in Cards/run_card.dat loads them instead of training.\n"
        )
        logger.info(
            "MadNIS output done: launch it with madnis = True in Cards/run_card.dat "
            "(in a fresh session: ./bin/mg5_aMC --mode=madnis_plugin, or %s/bin/generate_events)",
            self.dir_path,
        )

    def _write_me5_configuration(self) -> None:
        path = os.path.join(self.dir_path, "Cards", "me5_configuration.txt")
        self._cmd.do_save("options %s" % path.replace(" ", r"\ "), check=False, to_keep={"mg5_path": madgraph.MG5DIR})

    def _add_madnis_block(self) -> None:
        block = card_block(MadnisSettings())
        for name in ("run_card_default.dat", "run_card.dat"):
            path = Path(self.dir_path) / "Cards" / name
            text = path.read_text()
            if "= madnis " not in text:
                path.write_text(text.rstrip("\n") + "\n" + block)
