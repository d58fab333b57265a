"""Route MadEvent's ``generate_events`` to MadNIS when the run_card says ``madnis = True``.

:func:`install` takes a MadEvent command class and the banner module it uses (MG5aMC's own, or the
``bin/internal`` copies of an output directory) and

- registers the ``madnis*`` run_card entries in ``RunCardLO`` (typed, commented, never passed to
  Fortran), so stock MadEvent reads them as known entries and ignores them;
- wraps ``run_generate_events``: with ``madnis = True`` MadNIS replaces survey/refine/combine,
  otherwise the original method runs unchanged.

It also repairs what MG5aMC's ``write_autodef`` leaves behind in ``Source/run.inc`` when entries stop being
user entries (:func:`fix_user_common_block`).

:func:`install_in_output` makes an output directory's own ``bin/generate_events`` do the same, and guards
the directory against a plain ``mg5_aMC`` session's ``launch``, which uses MG5aMC's own MadEvent interface:
its ``Cards/me5_configuration.txt`` sets an f2py compiler, so MG5aMC 3.5 loads its plugins (this hook among
them) while it builds the launch menu (``AskRun.get_allowed_reweight``); where the plugin cannot be loaded,
``Source/makefile`` stops the stock build in one line while ``run_card.inc`` says ``madnis = .TRUE.``
(only a session without the hook writes it there). Nothing here imports ``madgraph``.
"""

from __future__ import annotations

import gc
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from ..settings import TRUE_WORDS, card_bool, registered_entries

RUN_DEPENDENCIES = ("torch", "numpy", "cffi", "matplotlib")  # what a MadNIS run imports beyond this hook
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
    repair_write_autodef(banner_module.RunCard)
    if getattr(cmd_class.run_generate_events, "madnis_wrapped", False):
        return
    original = cmd_class.run_generate_events

    def run_generate_events(self, switch_mode, args):
        if not madnis_requested(self.run_card):
            return original(self, switch_mode, args)
        missing = [name for name in RUN_DEPENDENCIES if importlib.util.find_spec(name) is None]
        try:  # the run code loads in the background (run_madnis): missing modules are said here, before any compile
            if missing:
                raise ImportError(f"no module {', '.join(missing)}")
            from .launch_server import job_server
            from .madevent_run import run_madnis
        except ImportError as error:
            raise self.InvalidCmd(
                f"madnis = True needs madnis-mg5's dependencies in {sys.executable}: {error}"
            ) from None
        with job_server(self) as server:  # bound now; run_madnis forks it once the jobs' code is imported
            install_in_output(Path(self.me_dir))  # a stock output with madnis = True gets the guards too
            run_madnis(self, server)  # MadEvent's survey options (args) have no MadNIS meaning
        # what the run left (torch's and matplotlib's modules among it) lives until the process ends: collect the
        # run's garbage now and keep the rest out of later collections, so that the interpreter's last collection
        # at exit does not walk it (measured: exit 0.36 s -> 0.10 s, for 0.07 s here)
        gc.collect()
        gc.freeze()

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


def repair_write_autodef(run_card_class: type) -> None:
    """Run :func:`fix_user_common_block` on the files ``run_card_class.write_autodef`` rewrites (idempotent)."""
    if getattr(run_card_class.write_autodef, "madnis_repaired", False):
        return
    original = run_card_class.write_autodef

    def write_autodef(self, output_dir, output_file=None):
        original(self, output_dir, output_file)
        if output_dir and output_file is None:
            names = {self.default_autodef_file} | {p for p in self.definition_path if isinstance(p, str)}
            for name in names:
                fix_user_common_block(Path(output_dir) / name)

    write_autodef.madnis_repaired = True
    write_autodef.__doc__ = original.__doc__
    run_card_class.write_autodef = write_autodef


AUTODEF_LINE = re.compile(r"^\s+(.*)\s+([A-Za-z_]\w*)(\(?[\d:]*\)?)\s*!\s*added by autodef\s*$", re.M)  # MG5aMC's
USER_BLOCK = re.compile(r"^C\s+START USER COMMON BLOCK\s*\n(.*?)^C\s+STOP USER COMMON BLOCK[^\n]*\n?", re.M | re.S)


def fix_user_common_block(path: Path) -> None:
    """Make the user COMMON block of ``path`` name exactly the variables declared there ``added by autodef``.

    MG5aMC 3.5 writes the block's ``C START USER COMMON BLOCK`` marker through its FortranWriter, which indents
    it, and later looks for the unindented line: when entries stop being user entries (the ``madnis*`` entries
    a launch without this hook added to ``Source/run.inc``), their declarations go but the COMMON naming them
    stays, and Source no longer compiles ("Symbol 'madnis' has no IMPLICIT type").
    """
    if not path.exists():
        return
    text = path.read_text()
    block = USER_BLOCK.search(text)
    if block is None:
        return
    statement = "".join(line.strip().lstrip("$").strip() for line in block.group(1).splitlines())
    common = re.match(r"COMMON\s*/(\w+)/(.*)", statement, re.I)
    if common is None:
        return
    named = [n.strip().upper() for n in common.group(2).split(",") if n.strip()]
    declared = [m.group(2).upper() for m in AUTODEF_LINE.finditer(text)]
    if named == declared:
        return
    lines = []
    if declared:
        lines = ["C     START USER COMMON BLOCK", f"      COMMON/{common.group(1)}/{declared[0]}"]
        for name in declared[1:]:
            if len(lines[-1]) + len(name) + 1 > 72:
                lines.append("     $ ")
            lines[-1] += f",{name}"
        lines.append("C     STOP USER COMMON BLOCK")
    path.write_text(text[: block.start()] + "".join(f"{line}\n" for line in lines) + text[block.end() :])


GUARD_BEGIN = "# --- madnis-mg5 guard (written by madnis-mg5) ---"

GUARD = r"""
{begin}
# Only an mg5_aMC session without the madnis-mg5 hook writes madnis = .TRUE. into run_card.inc; its launch would
# run stock survey/refine although the run_card asks for MadNIS, so the stock build stops here.
ifeq ($(filter clean%,$(MAKECMDGOALS)),)
ifneq ($(shell grep -sil '^ *madnis *= *\.true\.' run_card.inc),)
$(error madnis = True but this mg5_aMC session did not load the madnis-mg5 plugin, so stock survey/refine would \
run instead of MadNIS: run $(abspath ..)/bin/generate_events, or launch in mg5_aMC --mode=madnis_plugin \
(after madnis-mg5 install-plugin))
endif
endif
"""

F2PY_SET = re.compile(r"^\s*f2py_compiler(_py3)?\s*=\s*(?!None\s*$)\S", re.M)

F2PY_LINES = """
# madnis-mg5: with an f2py compiler set, a plain mg5_aMC `launch` of this directory loads MG5aMC's plugins
# (for its reweight menu), and so the madnis-mg5 hook; f2py is MG5aMC's own default compiler name
f2py_compiler_py3 = f2py
"""


def install_in_output(out_dir: Path) -> None:
    """Hook ``out_dir``'s own MadEvent interface and guard its plain ``mg5_aMC`` launches (idempotent).

    ``bin/internal/madnis_hook.py`` + a line in ``bin/internal/madevent_interface.py``: ``bin/generate_events``
    runs MadNIS. ``Cards/me5_configuration.txt`` gets an f2py compiler unless one is set: a plain session loads
    the plugin when it can. ``Source/makefile`` gets the guard: where it cannot, the launch stops before survey.
    """
    internal = out_dir / "bin" / "internal"
    shim = SHIM.format(plugin_parent=str(Path(__file__).resolve().parents[2]), true_words=TRUE_WORDS)
    (internal / "madnis_hook.py").write_text(shim)
    _append_once(internal / "madevent_interface.py", HOOK_BEGIN, HOOK.format(begin=HOOK_BEGIN))
    _append_once(out_dir / "Source" / "makefile", GUARD_BEGIN, GUARD.format(begin=GUARD_BEGIN))
    config = out_dir / "Cards" / "me5_configuration.txt"
    if config.exists() and not F2PY_SET.search(config.read_text()):
        config.write_text(config.read_text().rstrip("\n") + "\n" + F2PY_LINES)


def _append_once(path: Path, marker: str, block: str) -> None:
    text = path.read_text()
    if marker not in text:
        path.write_text(text.rstrip("\n") + "\n" + block)
