"""``madnis-mg5 install-plugin``: idempotent, reversible, refuses foreign directories and bad MG5aMC versions."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from madnis_plugin import install


def main(argv: list[str]) -> int:
    """``madnis-mg5 install-plugin ...`` as the CLI dispatches it."""
    assert argv[0] == "install-plugin"
    parser = argparse.ArgumentParser()
    install.add_arguments(parser)
    return install.run(parser.parse_args(argv[1:]))


def fake_mg5(root: Path, version: str = "3.5.7") -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "mg5_aMC").write_text("#!/bin/sh\n")
    (root / "PLUGIN").mkdir()
    (root / "PLUGIN" / "__init__.py").write_text("")
    (root / "VERSION").write_text(f"version = {version}\ndate = 2024-11-29\n")
    return root


def test_install_is_idempotent_and_uninstall_reverses_it(tmp_path, capsys):
    mg5 = fake_mg5(tmp_path / "mg5")
    before = sorted(p.name for p in (mg5 / "PLUGIN").iterdir())
    assert main(["install-plugin", "--mg5", str(mg5)]) == 0
    target = mg5 / "PLUGIN" / "madnis_plugin"
    assert target.is_symlink() and (target / "settings.py").exists()
    assert main(["install-plugin", "--mg5", str(mg5)]) == 0
    assert "already installed" in capsys.readouterr().out
    assert main(["install-plugin", "--mg5", str(mg5), "--uninstall"]) == 0
    assert sorted(p.name for p in (mg5 / "PLUGIN").iterdir()) == before
    assert main(["install-plugin", "--mg5", str(mg5), "--uninstall"]) == 0
    assert "not installed" in capsys.readouterr().out


def test_copy_install_and_uninstall(tmp_path):
    mg5 = fake_mg5(tmp_path / "mg5")
    install.install(mg5, copy=True)
    target = mg5 / "PLUGIN" / "madnis_plugin"
    assert not target.is_symlink() and (target / "mg5" / "exporter.py").exists()
    assert "already" not in install.install(mg5, copy=False)  # a copy is replaced by the link
    assert target.is_symlink()
    install.uninstall(mg5)
    assert not target.exists()


def test_foreign_plugin_directory_is_left_alone(tmp_path, capsys):
    mg5 = fake_mg5(tmp_path / "mg5")
    foreign = mg5 / "PLUGIN" / "madnis_plugin"
    foreign.mkdir()
    (foreign / "__init__.py").write_text("# someone else's\n")
    assert main(["install-plugin", "--mg5", str(mg5)]) == 1
    assert main(["install-plugin", "--mg5", str(mg5), "--uninstall"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "not installed by madnis-mg5" in err
    assert (foreign / "__init__.py").read_text() == "# someone else's\n"


@pytest.mark.parametrize("version", ["3.4.2", "3.6.0"])
def test_unsupported_mg5_version_is_one_clear_line(tmp_path, capsys, version):
    mg5 = fake_mg5(tmp_path / "mg5", version)
    assert main(["install-plugin", "--mg5", str(mg5)]) == 1
    err = capsys.readouterr().err
    assert f"MG5aMC {version} is not supported" in err and err.count("\n") == 1
    assert not (mg5 / "PLUGIN" / "madnis_plugin").exists()


def test_not_an_mg5_directory(tmp_path, capsys):
    assert main(["install-plugin", "--mg5", str(tmp_path)]) == 1
    assert "is not an MG5aMC directory" in capsys.readouterr().err
