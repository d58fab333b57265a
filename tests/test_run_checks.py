"""Check before working: what would fail after training fails before it, in one line, and a failed or
interrupted run never replaces a good saved sampler."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from madnis_plugin.lhe import Banner, LHEInit
from madnis_plugin.run import RunCheckError, RunSettings, run_processes, saved_sampler_path
from test_orchestrate import toy_source

from madnis import MadNIS, TrainingConfig
from madnis.toys import CamelBack1D


@pytest.fixture
def saved(tmp_path):
    """A run's settings (saving samplers) and the bytes of the good sampler saved before it."""
    settings = RunSettings(
        nevents=20,
        output_dir=tmp_path / "madnis",
        events_file=str(tmp_path / "Events" / "run_01" / "unweighted_events.lhe.gz"),
        integration_points=2000,
        weighted_batch=1000,
        training=TrainingConfig(steps=5, batch_size=128, seed=3),
    )
    path = saved_sampler_path(settings.output_dir, "P1_a")
    path.parent.mkdir()
    MadNIS(CamelBack1D(prior="bw"), TrainingConfig(steps=0)).save(path)
    return settings, path, path.read_bytes()


def run(settings: RunSettings, source=None) -> list[str]:
    lines: list[str] = []
    run_processes([source or toy_source("P1_a", 1)], settings, Banner(), LHEInit(processes=[]), log=lines.append)
    return lines


def refused(settings: RunSettings) -> str:
    lines: list[str] = []
    with pytest.raises(RunCheckError) as error:
        run_processes([toy_source("P1_a", 1)], settings, Banner(), LHEInit(processes=[]), log=lines.append)
    assert not lines  # nothing trained, nothing printed
    assert "\n" not in str(error.value)
    return str(error.value)


def test_nevents_below_one_is_refused_before_training(saved):
    settings, path, before = saved
    assert "nevents = 0" in refused(replace(settings, nevents=0))
    assert path.read_bytes() == before


def test_unwritable_events_directory_is_refused_before_training(saved, tmp_path):
    settings, path, before = saved
    (tmp_path / "Events").write_text("a file where the Events directory belongs\n")
    assert f"cannot write to {tmp_path / 'Events' / 'run_01'}" in refused(settings)
    assert path.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_output_directory_is_refused_before_training(saved):
    settings, path, before = saved
    settings.output_dir.chmod(0o555)
    try:
        assert f"cannot write to {settings.output_dir}" in refused(settings)
    finally:
        settings.output_dir.chmod(0o755)
    assert path.read_bytes() == before


def test_interrupted_run_keeps_the_saved_sampler(saved):
    settings, path, before = saved

    def interrupted(r, channel, generator):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(settings, toy_source("P1_a", 1, interrupted))
    assert path.read_bytes() == before
    run(settings)  # a successful run replaces it
    assert path.read_bytes() != before


def test_interrupted_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    _, path, before = saved

    def interrupted_save(state, file):
        open(file, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        MadNIS(CamelBack1D(prior="bw"), TrainingConfig(steps=0, seed=9)).save(path)
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == [path.name]
