"""Route MadEvent's ``generate_events`` to MadNIS when the run_card says ``madnis = True``.

:func:`install` takes a MadEvent command class and the banner module it uses (MG5aMC's own, or the
``bin/internal`` copies of an output directory) and

- registers the ``madnis*`` run_card entries in ``RunCardLO`` (typed, commented, never passed to
  Fortran), so stock MadEvent reads them as known entries and ignores them;
- wraps ``run_generate_events``: with ``madnis = True`` MadNIS replaces survey/refine/combine,
  otherwise the original method runs unchanged.

:func:`install_in_output` makes an output directory's own ``bin/generate_events`` do the same.
Nothing here imports ``madgraph``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..settings import TRUE_WORDS, card_bool, registered_entries

HOOK_BEGIN = "# --- madnis-mg5 hook (written by `output madnis`) ---"

SHIM = '''"""Written by `output madnis` (madnis-mg5): loads the plugin's MadEvent hook for this directory."""
import logging
import sys

PLUGIN_PARENT = {plugin_parent!r}  # where madnis_plugin was found at output time


def install(cmd_class, banner_module):
    try:
        from madnis_plugin.mg5 import madevent_hook
    except ImportError:
        if PLUGIN_PARENT not in sys.path:
            sys.path.append(PLUGIN_PARENT)
        try:
            from madnis_plugin.mg5 import madevent_hook
        except ImportError as error:
            logging.getLogger("madevent").warning(
                "madnis-mg5 plugin not importable (%s): runs with madnis = True will stop", error)
            madevent_hook = None
    if madevent_hook is None:
        _refuse_madnis_runs(cmd_class)
    else:
        madevent_hook.install(cmd_class, banner_module)


def _refuse_madnis_runs(cmd_class):
    original = cmd_class.run_generate_events

    def run_generate_events(self, switch_mode, args):
        if "madnis" in self.run_card and \
                str(self.run_card["madnis"]).strip().lower().strip(".") in {true_words!r}:
            raise self.InvalidCmd("madnis = True but the madnis-mg5 plugin is not importable: "
                                  "pip install madnis-mg5, or set madnis = False")
        return original(self, switch_mode, args)

    cmd_class.run_generate_events = run_generate_events
'''

HOOK = """
{begin}
try:
    from . import madnis_hook as _madnis_hook
except ImportError:
    import madnis_hook as _madnis_hook
_madnis_hook.install(MadEventCmd, banner_mod)
"""


def install(cmd_class: type, banner_module: Any) -> None:
    """Register the run_card entries and wrap ``cmd_class.run_generate_events`` (idempotent)."""
    register_run_card_entries(banner_module.RunCardLO)
    if getattr(cmd_class.run_generate_events, "madnis_wrapped", False):
        return
    original = cmd_class.run_generate_events

    def run_generate_events(self, switch_mode, args):
        if not madnis_requested(self.run_card):
            return original(self, switch_mode, args)
        try:
            from .madevent_run import run_madnis
        except ImportError as error:
            raise self.InvalidCmd(
                f"madnis = True needs madnis-mg5's dependencies in {sys.executable}: {error}"
            ) from None
        return run_madnis(self)  # MadEvent's survey options (args) have no MadNIS meaning

    run_generate_events.madnis_wrapped = True
    run_generate_events.__doc__ = original.__doc__
    cmd_class.run_generate_events = run_generate_events


def madnis_requested(run_card: Any) -> bool:
    """Whether the run_card asks for MadNIS (``madnis`` entry true)."""
    value = run_card["madnis"] if "madnis" in run_card else False  # RunCard.get takes no default
    return bool(card_bool(value))


def register_run_card_entries(run_card_class: type) -> None:
    """Make ``madnis*`` known entries of ``run_card_class`` (default off, hidden, not in Fortran)."""
    if getattr(run_card_class, "madnis_registered", False):
        return
    original = run_card_class.default_setup

    def default_setup(self):
        original(self)
        for name, default, comment in registered_entries():
            if name == "madnis":
                default = False  # stock outputs: off; `output madnis` writes True in its run_card
            self.add_param(name, default, include=False, hidden=True, comment=comment)

    run_card_class.default_setup = default_setup
    run_card_class.madnis_registered = True


def install_in_output(out_dir: Path, plugin_parent: Path) -> None:
    """Write ``bin/internal/madnis_hook.py`` and hook it into the output's ``madevent_interface.py``."""
    internal = out_dir / "bin" / "internal"
    (internal / "madnis_hook.py").write_text(SHIM.format(plugin_parent=str(plugin_parent), true_words=TRUE_WORDS))
    interface = internal / "madevent_interface.py"
    text = interface.read_text()
    if HOOK_BEGIN not in text:
        interface.write_text(text.rstrip("\n") + "\n" + HOOK.format(begin=HOOK_BEGIN))
