"""madnis_plugin: MadNIS inside MG5aMC (``output madnis DIR``, ``launch``), the built-in demo and the CLI.

Only the ``mg5`` subpackage imports MG5aMC; it is loaded here when MG5aMC imports this plugin
(``madgraph`` already imported), so ``import madnis_plugin`` works without MG5aMC.
"""

from __future__ import annotations

import sys

# MG5aMC plugin declarations (read by MG5aMC's misc.is_plugin_supported)
minimal_mg5amcnlo_version = (3, 5, 0)
maximal_mg5amcnlo_version = (3, 5, 1000)
latest_validated_version = (3, 5, 7)


def mg5_version_supported(version: tuple[int, ...]) -> bool:
    """Whether MG5aMC ``version`` lies in [minimal, maximal]."""
    return tuple(minimal_mg5amcnlo_version) <= tuple(version) <= tuple(maximal_mg5amcnlo_version)


if "madgraph" in sys.modules:
    from .mg5.plugin import new_interface, new_output  # noqa: F401  (MG5aMC reads these names)
