"""``madnis-mg5 install-plugin``: link (or copy) this package into MG5aMC's ``PLUGIN/madnis_plugin``.

Idempotent (a second install reports "already installed") and reversible (``--uninstall`` removes only
what this command created: the symlink to this package, or a copy carrying the marker file).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from . import maximal_mg5amcnlo_version, mg5_version_supported, minimal_mg5amcnlo_version

PLUGIN_NAME = "madnis_plugin"
COPY_MARKER = ".installed_by_madnis_mg5"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MG5AMC_HOME = "/opt/mg5amc"


def mg5_home() -> Path:
    """MG5aMC's directory: ``$MG5AMC_HOME``, else /opt/mg5amc (whether or not it exists)."""
    return Path(os.environ.get("MG5AMC_HOME", DEFAULT_MG5AMC_HOME))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mg5", type=Path, default=None, help=f"MG5aMC directory (default: $MG5AMC_HOME, else {DEFAULT_MG5AMC_HOME})"
    )
    parser.add_argument("--copy", action="store_true", help="copy the package instead of symlinking it")
    parser.add_argument("--uninstall", action="store_true", help="remove the plugin installed by this command")


def mg5_version(mg5: Path) -> tuple[int, ...]:
    """MG5aMC's version from its VERSION file, e.g. (3, 5, 7)."""
    for line in (mg5 / "VERSION").read_text().splitlines():
        if line.strip().startswith("version"):
            return tuple(int(p) for p in line.split("=", 1)[1].strip().split(".") if p.isdigit())
    raise ValueError(f"no version line in {mg5 / 'VERSION'}")


def install(mg5: Path, copy: bool = False) -> str:
    """Install into ``mg5``; return a one-line message. Raises ValueError with a one-line reason."""
    _check_mg5(mg5)
    target = mg5 / "PLUGIN" / PLUGIN_NAME
    if target.is_symlink() and target.resolve() == PACKAGE_DIR:
        return f"already installed: {target} -> {PACKAGE_DIR}"
    if target.exists() or target.is_symlink():
        if not _ours(target):
            raise ValueError(f"{target} exists and was not installed by madnis-mg5; remove it first")
        _remove(target)
    if copy:
        shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
        (target / COPY_MARKER).write_text(str(PACKAGE_DIR) + "\n")
        return f"installed (copy): {target}"
    target.symlink_to(PACKAGE_DIR, target_is_directory=True)
    return f"installed: {target} -> {PACKAGE_DIR}"


def uninstall(mg5: Path) -> str:
    """Remove what :func:`install` created; return a one-line message."""
    target = mg5 / "PLUGIN" / PLUGIN_NAME
    if not (target.exists() or target.is_symlink()):
        return f"not installed: {target}"
    if not _ours(target):
        raise ValueError(f"{target} was not installed by madnis-mg5; not removing it")
    _remove(target)
    return f"uninstalled: {target}"


def run(args: argparse.Namespace) -> int:
    mg5 = args.mg5 or mg5_home()
    try:
        message = uninstall(mg5) if args.uninstall else install(mg5, copy=args.copy)
    except (ValueError, OSError) as error:
        print(f"madnis-mg5 install-plugin: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _check_mg5(mg5: Path) -> None:
    if not (mg5 / "bin" / "mg5_aMC").is_file() or not (mg5 / "PLUGIN").is_dir():
        raise ValueError(f"{mg5} is not an MG5aMC directory (no bin/mg5_aMC or PLUGIN/)")
    version = mg5_version(mg5)
    if not mg5_version_supported(version):
        raise ValueError(
            f"MG5aMC {'.'.join(map(str, version))} is not supported (needs "
            f"{'.'.join(map(str, minimal_mg5amcnlo_version))} to {'.'.join(map(str, maximal_mg5amcnlo_version))})"
        )


def _ours(target: Path) -> bool:
    if target.is_symlink():
        return (
            target.resolve() == PACKAGE_DIR
            or (target.resolve() / "settings.py").exists()
            and (target.resolve() / "mg5").is_dir()
        )
    return (target / COPY_MARKER).exists()


def _remove(target: Path) -> None:
    if target.is_symlink():
        target.unlink()
    else:
        shutil.rmtree(target)
