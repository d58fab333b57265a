"""The run's PNG plots keep every label inside the picture (they are laid out with fixed margins, not measured)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest
from madnis_plugin.run import plots
from madnis_plugin.run.plots import plot_run


def fake_source(name: str, n_channels: int, rng: np.random.Generator) -> SimpleNamespace:
    """What the plots read of a SourceResult: names, channel shares, losses, the weighted sample and w_max."""
    fractions = rng.dirichlet(np.ones(n_channels))
    weights = rng.lognormal(0.0, 2.0, 50_000)
    return SimpleNamespace(
        source=SimpleNamespace(
            name=name, channel_names=[f"G{100 + i}" for i in range(n_channels)], observable_label="m_ll [GeV]"
        ),
        result=SimpleNamespace(
            channels=[SimpleNamespace(fraction=f, channel=i) for i, f in enumerate(fractions)], integral=109.9
        ),
        trained=SimpleNamespace(
            losses=list(np.exp(-np.arange(300) / 80) + 0.1), running_integrals=list(109.9 + rng.normal(0, 3, 300))
        ),
        events=SimpleNamespace(
            prior_fractions=fractions[::-1],
            sample_weights=weights,
            w_max=float(np.quantile(weights, 0.999)),
            efficiency=0.0137,
            sample_observable=rng.uniform(60.0, 120.0, len(weights)),
            event_observable=rng.uniform(60.0, 120.0, 1000),
        ),
    )


@pytest.mark.parametrize("n_channels", [3, 48])
def test_no_plot_cuts_a_label_at_its_edge(tmp_path, n_channels):
    """Every plot (training; per part channels, weights, observable) of a run of two channel parts with long names
    (48 channels: tick labels at 45 degrees) has a white border: a label cut by the figure's edge leaves ink there
    (a log axis within one decade labels its minor ticks, 6 x 10^-1, wider than margins of 0.8 inches held)."""
    rng = np.random.default_rng(1)
    run = SimpleNamespace(sources=[fake_source(f"P1_gg_wpqqg.{k}of2", n_channels, rng) for k in (1, 2)])
    paths = plot_run(run, tmp_path, np.linspace(60.0, 120.0, 31))
    assert len(paths) == 7
    for path in paths:
        image = matplotlib.image.imread(path)[..., :3]
        border = np.concatenate([image[:2].reshape(-1, 3), image[-2:].reshape(-1, 3)])
        border = np.concatenate([border, image[:, :2].reshape(-1, 3), image[:, -2:].reshape(-1, 3)])
        assert border.min() > 0.95, f"{path.name}: ink at the edge"


def two_part_run(n_channels: int) -> SimpleNamespace:
    rng = np.random.default_rng(1)
    return SimpleNamespace(sources=[fake_source(f"P1_gg_wpqqg.{k}of2", n_channels, rng) for k in (1, 2)])


def test_two_processes_draw_the_same_plots(tmp_path):
    """Drawn on two cores, a run gets the same files in the same order, with the same pixels, as on one."""
    run = two_part_run(5)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = plot_run(run, tmp_path / "one", np.linspace(60.0, 120.0, 31))
    two = plot_run(run, tmp_path / "two", np.linspace(60.0, 120.0, 31), processes=2)
    assert [p.relative_to(tmp_path / "two") for p in two] == [p.relative_to(tmp_path / "one") for p in one]
    for a, b in zip(one, two):
        assert np.array_equal(matplotlib.image.imread(a), matplotlib.image.imread(b)), a.name
    assert not list((tmp_path / "two").glob(".*")), "a temporary file was left"


def test_a_plot_the_child_fails_is_drawn_by_the_launch(tmp_path, monkeypatch):
    """The forked child's plots are drawn again by the launch when the child fails: none is missing."""
    launch = os.getpid()
    real = plots.plot_weights

    def fails_in_child(source, directory):
        if os.getpid() != launch:
            raise RuntimeError("child failed")
        return real(source, directory)

    monkeypatch.setattr(plots, "plot_weights", fails_in_child)
    paths = plot_run(two_part_run(3), tmp_path, processes=2)
    assert [p.name for p in paths] == [
        "training.png",
        "channels_P1_gg_wpqqg.1of2.png",
        "weights_P1_gg_wpqqg.1of2.png",
        "channels_P1_gg_wpqqg.2of2.png",
        "weights_P1_gg_wpqqg.2of2.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
