"""What MG5aMC reads from the plugin: ``new_output`` (``output madnis DIR``) and ``new_interface``.

Importing this module (MG5aMC does when it scans its PLUGIN/ directory, e.g. at ``output``) installs the
MadNIS hook into MG5aMC's own MadEvent interface, which ``launch DIR`` uses in 3.5 (no launch hook there).
``./bin/mg5_aMC --mode=madnis_plugin`` starts :class:`MadnisMasterCmd`, so a fresh session that only
launches an existing ``output madnis`` directory has the hook too.
"""

from __future__ import annotations

import madgraph.interface.madevent_interface as madevent_interface
import madgraph.interface.master_interface as master_interface
import madgraph.various.banner as banner

from . import madevent_hook
from .exporter import MadnisExporter

madevent_hook.install(madevent_interface.MadEventCmd, banner)


class MadnisMasterCmd(master_interface.MasterCmd):
    """MG5aMC's command line with MadNIS launches (``--mode=madnis_plugin``).

    ``launch DIR`` runs MadEvent as usual; its ``generate_events`` is routed to MadNIS when the run_card
    of DIR has ``madnis = True`` (hook installed at import), stock MadEvent otherwise.
    """

    def do_launch(self, line, *args, **opts):
        madevent_hook.install(madevent_interface.MadEventCmd, banner)
        return super().do_launch(line, *args, **opts)


new_output = {"madnis": MadnisExporter}
new_interface = MadnisMasterCmd
