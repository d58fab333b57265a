"""Build a MadEvent ``SubProcesses/P*`` directory into a shared library with the MadNIS C ABI.

The library holds the directory's own Fortran (matrix elements, PDFs, cuts, scales, genps.f
phase-space mapping) plus the glue ``madnis_bridge.f``; it is compiled with the directory's
makefiles and flags (position independent) and cached in ``<P-dir>/madnis_build/``: it is
rebuilt only when a source, card or flag changes. MG5aMC's Python is not imported; only when
``Source/run_card.inc`` or ``Source/param_card.inc`` is missing or older than its card is the
process directory's own ``bin/madevent treatcards`` run to write it (as MadEvent's launch does).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

GLUE_DIR = Path(__file__).resolve().parent
GLUE_FILES = ("madnis_bridge.f", "madnis_glue.inc", "madnis_bridge.mk")
BUILD_DIRNAME = "madnis_build"
SOURCE_SUFFIXES = (".f", ".f90", ".inc", ".c", ".cc", ".h")
ARCHIVE_CHECKS = (["ranlib"], ["objdump", "-h"])
"""Each archive must pass both: ranlib indexes it, and objdump reads every member (ranlib exits 0 on an archive with
a truncated object, leaving that member's symbols out of the index)."""


class BuildError(RuntimeError):
    """A process directory could not be built into a bridge library (one-line message)."""


def build(pdir: Path | str, force: bool = False) -> Path:
    """Build (or reuse) the bridge library of MadEvent P-dir ``pdir``; return the ``.so`` path."""
    pdir = Path(pdir).resolve()
    proc = pdir.parent.parent
    if not (pdir / "auto_dsig.f").is_file() or not (pdir / "genps.f").is_file():
        raise BuildError(f"{pdir} is not a MadEvent SubProcesses/P* directory (no auto_dsig.f/genps.f)")
    fc = os.environ.get("FC", "gfortran")
    out = pdir / BUILD_DIRNAME
    lib = library_path(pdir)
    card = read_run_card(proc / "Cards" / "run_card.dat")
    make_vars = _make_variables(card, fc)
    with _lock(proc):
        _treat_cards(proc)
        key = _fingerprint(pdir, proc, make_vars)
        stamp = out / "fingerprint"
        if not force and lib.is_file() and stamp.is_file() and stamp.read_text() == key:
            return lib
        if shutil.which(fc) is None:
            raise BuildError(f"Fortran compiler '{fc}' not found: install gfortran (apt-get install gfortran)")
        if any(shutil.which(tool) is None for tool in ("make", "objcopy", "objdump", "ranlib")):
            raise BuildError(
                "'make', 'objcopy', 'objdump' and 'ranlib' (binutils) are needed to build the bridge library"
            )
        out.mkdir(exist_ok=True)
        stamp.unlink(missing_ok=True)
        log = out / "build.log"
        log.write_text("")
        pdf_stamp = out / "pdlabel"
        pdlabel = card.get("pdlabel", "")
        if pdf_stamp.is_file() and pdf_stamp.read_text() != pdlabel:  # as MadEvent does on a PDF change
            _make(proc / "Source", ["clean4pdf"], make_vars, "cleaning the PDF libraries", log)
        _make(proc / "Source", [], make_vars, "compiling Source libraries", log)
        _repair_source_race(proc, make_vars, log)
        _make(
            pdir,
            ["-f", "makefile", "-f", str(GLUE_DIR / "madnis_bridge.mk"), "madnis-lib"],
            make_vars + [f"MADNIS_SRC={GLUE_DIR}", f"MADNIS_DIR={out}", f"MADNIS_LIB={lib}"],
            f"building {lib.name}",
            log,
        )
        pdf_stamp.write_text(pdlabel)
        stamp.write_text(key)
    return lib


def library_path(pdir: Path) -> Path:
    """Where the bridge library of P-dir ``pdir`` is cached."""
    return pdir / BUILD_DIRNAME / f"libmadnis_{pdir.name}.so"


def built_library(pdir: Path | str) -> Path:
    """The library :func:`build` cached in ``pdir``, taken as it is: no fingerprint check, never a compile.

    For a copy of a process directory moved elsewhere (a gridpack unpacked on another machine, maybe without a
    Fortran compiler), where the library compiled with it is the one to load.
    """
    pdir = Path(pdir).resolve()
    lib = library_path(pdir)
    if not lib.is_file():
        raise BuildError(f"{pdir} holds no compiled bridge library ({lib.relative_to(pdir)} missing)")
    return lib


def read_run_card(path: Path) -> dict[str, str]:
    """``name -> value`` (lower-case names, raw string values) from a MadEvent run_card."""
    entries: dict[str, str] = {}
    if not path.is_file():
        return entries
    for line in path.read_text().splitlines():
        line = line.split("!", 1)[0].split("#", 1)[0]
        match = re.match(r"\s*(.*?)\s*=\s*(\w+)\s*$", line)
        if match:
            entries[match.group(2).lower()] = match.group(1).strip().strip("'\"")
    return entries


def _make_variables(card: dict[str, str], fc: str) -> list[str]:
    """Compiler flags as MadEvent's launch sets them from the run_card, always with -fPIC."""
    global_flag = card.get("global_flag", "-O")
    variables = [
        f"FC={fc}",
        f"FFLAGS=-w -fPIC -ffixed-line-length-132 {global_flag}",
        f"GLOBAL_FLAG={global_flag}",
        f"MATRIX_FLAG={card.get('matrix_flag', '')}",
        f"ALOHA_FLAG={card.get('aloha_flag', '')}",
    ]
    if card.get("pdlabel", "").lower() == "lhapdf":
        lhapdf = shutil.which("lhapdf-config")
        if lhapdf is None:
            raise BuildError("run_card asks for pdlabel = lhapdf but lhapdf-config is not on PATH")
        variables.append(f"lhapdf={lhapdf}")
    return variables


def _treat_cards(proc: Path) -> None:
    """Write Source/run_card.inc and Source/param_card.inc if missing or older than the cards."""
    for mode, inc, card in (("run", "run_card.inc", "run_card.dat"), ("param", "param_card.inc", "param_card.dat")):
        inc_path, card_path = proc / "Source" / inc, proc / "Cards" / card
        if inc_path.is_file() and (not card_path.is_file() or inc_path.stat().st_mtime >= card_path.stat().st_mtime):
            continue
        result = subprocess.run(
            [sys.executable, str(proc / "bin" / "madevent"), "treatcards", mode],
            cwd=proc,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if not inc_path.is_file():
            raise BuildError(
                f"could not write {inc_path} from {card_path} with bin/madevent treatcards {mode}: "
                f"{_last_line(result.stdout + result.stderr)}"
            )
        # treatcards leaves an .inc whose content did not change untouched: mark it as treated, or every process
        # that opens the library (each job of a run) would start MadEvent's interface again (4 s measured)
        os.utime(inc_path)


MAKE_JOBS = min(os.cpu_count() or 1, 8)  # parallel compilation, as MG5aMC's own compile step runs make


def _make(cwd: Path, args: list[str], variables: list[str], what: str, log: Path, jobs: int = MAKE_JOBS) -> None:
    result = subprocess.run(
        ["make", "-s", f"-j{jobs}", *args, *variables],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    with open(log, "a") as handle:
        handle.write(f"$ make {' '.join(args)} (in {cwd})\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        errors = [line for line in (result.stdout + result.stderr).splitlines() if "rror" in line]
        detail = errors[0] if errors else _last_line(result.stdout + result.stderr)
        raise BuildError(f"{what} in {cwd} failed: {detail.strip()} (full log: {log})")


def _repair_source_race(proc: Path, make_vars: list[str], log: Path) -> None:
    """Undo a race of MG5aMC's Source makefile under ``make -j``: libgammaUPC.a is made by two rules at once
    (Source/makefile's own and PDF/makefile's, which also deletes it first), which can leave it missing, without
    its index (seen: the bridge link failing with "archive has no index") or with a truncated member (seen: ranlib
    failing on it, or ranlib succeeding without indexing it). A sequential make rebuilds what is missing (a no-op
    otherwise) and ranlib re-indexes every archive; an archive ranlib or objdump cannot read is removed and rebuilt
    by one more sequential make, once."""
    for rebuilt in (False, True):
        _make(proc / "Source", [], make_vars, "compiling Source libraries (sequential pass)", log, jobs=1)
        errors = _index_all(sorted((proc / "lib").glob("*.a")))
        if not errors:
            return
        if rebuilt:
            archive, error = next(iter(errors.items()))
            raise BuildError(f"{archive.name} stays malformed after a rebuild: {error} (full log: {log})")
        for archive in errors:
            archive.unlink()


def _index_all(archives: list[Path]) -> dict[Path, str]:
    """Index and read every archive; the first failing check's error for each that fails (empty: all good). One
    process per check for all archives (0.03 s, where one process per archive took 0.2 s of every build: on a
    single-P-dir launch's critical path); only where that fails, one per archive names the failing ones."""
    files = list(map(str, archives))
    if not archives or all(_run(command + files) == "" for command in ARCHIVE_CHECKS):
        return {}
    errors = {
        archive: next(filter(None, (_run(command + [str(archive)]) for command in ARCHIVE_CHECKS)), "")
        for archive in archives
    }
    return {archive: error for archive, error in errors.items() if error}


def _run(command: list[str]) -> str:
    """Run ``command``; its error output's last line, or "" when it succeeded."""
    result = subprocess.run(command, capture_output=True, text=True)
    return _last_line(result.stderr) if result.returncode != 0 else ""


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _fingerprint(pdir: Path, proc: Path, make_vars: list[str]) -> str:
    """Hash of everything the library depends on: sources, includes, cards, glue, flags."""
    digest = hashlib.sha256("\n".join(make_vars).encode())
    files = sorted(p for p in pdir.iterdir() if p.suffix in SOURCE_SUFFIXES)
    files += sorted(p for p in (proc / "Source").rglob("*") if p.suffix in SOURCE_SUFFIXES)
    files += [proc / "Cards" / "run_card.dat", proc / "Cards" / "param_card.dat"]
    files += [GLUE_DIR / name for name in GLUE_FILES]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(proc) if path.is_relative_to(proc) else path.name).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class _lock:
    """Exclusive lock on a process directory while its libraries are (re)built."""

    def __init__(self, proc: Path):
        self.path = proc / "lib" / ".madnis_build.lock"

    def __enter__(self):
        self.path.parent.mkdir(exist_ok=True)
        self.handle = open(self.path, "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
