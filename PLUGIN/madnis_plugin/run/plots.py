"""PNG plots of one run (matplotlib Agg, no display needed): loss, channel shares, weights, observable.

The plots are drawn on up to ``processes`` cores: the launch has them idle at its end, and a two-part P-dir's five
plots took 0.5 s of a ~11 s ``g g > t t~ g`` launch on one. A forked child (matplotlib already imported) draws half of
them; each PNG is written under a temporary name and renamed, so none is left half-written, and a plot the child
did not deliver (it failed or was stopped) is drawn by the launch itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .orchestrate import RunResult, SourceResult, channel_names  # noqa: E402

# margins in inches (labels, ticks, title), the same on every figure size: fixed rather than ``tight_layout``, whose
# measuring of every text took half of the plots' time (0.4 of 0.8 s for a two-part P-dir's five plots)
MARGINS = dict(left=1.05, right=0.15, top=0.35, bottom=0.55)
ROTATED_LABELS = 0.3  # more room below for tick labels at 45 degrees
TITLE_INCHES_PER_CHARACTER = 0.1  # the default 12-point title, measured with room to spare


def _width(title: str, minimum: float) -> float:
    """A figure width (inches) at least ``minimum`` whose axes hold ``title`` (P-dir names make titles long)."""
    return max(minimum, TITLE_INCHES_PER_CHARACTER * len(title) + MARGINS["left"] + MARGINS["right"])


def _save(fig, path: Path, extra_bottom: float = 0.0) -> Path:
    width, height = fig.get_size_inches()
    m = MARGINS
    fig.subplots_adjust(
        left=m["left"] / width,
        right=1 - m["right"] / width,
        top=1 - m["top"] / height,
        bottom=(m["bottom"] + extra_bottom) / height,
        wspace=0.25,
    )
    partial = path.with_name(f".{path.name}.tmp")
    fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)
    os.replace(partial, path)
    return path


def plot_training(run: RunResult, directory: Path) -> Path:
    """Training loss and the running cross-section estimate per step, one line per source."""
    fig, (ax_loss, ax_sigma) = plt.subplots(1, 2, figsize=(10, 3.6))
    for s in run.sources:
        ax_loss.plot(s.trained.losses, label=s.source.name, lw=1)
        ax_sigma.plot(s.trained.running_integrals, label=s.source.name, lw=0.8)
        ax_sigma.axhline(s.result.integral, ls="--", lw=0.8, color="k")
    ax_loss.set(xlabel="training step", ylabel="loss", yscale="log", title="training loss")
    ax_sigma.set(xlabel="training step", ylabel="batch estimate of sigma [pb]", title="running cross section")
    ax_loss.legend(fontsize=7)
    return _save(fig, directory / "training.png")


def plot_channels(source: SourceResult, directory: Path) -> Path:
    """Per-channel share of the cross section: learned channel weights vs the prior alpha."""
    names = channel_names(source)
    learned = [c.fraction for c in source.result.channels]
    x = np.arange(len(learned))
    title = f"{source.source.name}: channel contributions"
    fig, ax = plt.subplots(figsize=(_width(title, max(4.0, 0.6 * len(x) + 2)), 3.4))
    ax.bar(x - 0.2, source.events.prior_fractions, width=0.4, label="prior alpha (single-diagram)")
    ax.bar(x + 0.2, learned, width=0.4, label="MadNIS (trained)")
    rotated = len(x) > 8
    ax.set_xticks(x, names, rotation=45 if rotated else 0)
    ax.set(ylabel="fraction of sigma", title=title)
    ax.legend(fontsize=8)
    return _save(fig, directory / f"channels_{source.source.name}.png", ROTATED_LABELS if rotated else 0.0)


def plot_weights(source: SourceResult, directory: Path) -> Path:
    """Distribution of w / <w> of the integration's points (the first weighted sample) with the unweighting w_max."""
    w = source.events.sample_weights[source.events.sample_weights > 0]
    mean = w.mean()
    title = f"{source.source.name}: weights"
    fig, ax = plt.subplots(figsize=(_width(title, 5.5), 3.4))
    ax.hist(np.log10(w / mean), bins=80, histtype="step")
    ax.axvline(
        np.log10(source.events.w_max / mean),
        color="r",
        ls="--",
        label=f"w_max (eff. {100 * source.events.efficiency:.1f}%)",
    )
    ax.set(xlabel="log10(w / <w>)", ylabel="points", yscale="log", title=title)
    ax.legend(fontsize=8)
    return _save(fig, directory / f"weights_{source.source.name}.png")


def plot_observable(source: SourceResult, directory: Path, bins: np.ndarray) -> Path:
    """Normalised histogram of the observable: unweighted events vs the weighted sample (truth)."""
    title = f"{source.source.name}: {source.source.observable_label}"
    fig, ax = plt.subplots(figsize=(_width(title, 6.0), 3.8))
    w = source.events.sample_weights
    ax.hist(
        source.events.sample_observable,
        bins=bins,
        weights=w / w.sum(),
        histtype="stepfilled",
        alpha=0.35,
        label=f"weighted truth ({len(w)} points)",
    )
    n = len(source.events.event_observable)
    counts, edges = np.histogram(source.events.event_observable, bins=bins)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.errorbar(centres, counts / n, yerr=np.sqrt(counts) / n, fmt="k.", ms=3, label=f"unweighted events ({n})")
    log_x = bins[0] > 0 and bins[-1] / bins[0] > 20
    ax.set(
        xlabel=source.source.observable_label,
        ylabel="fraction per bin",
        yscale="log",
        xscale="log" if log_x else "linear",
        title=title,
    )
    ax.legend(fontsize=8)
    return _save(fig, directory / f"observable_{source.source.name}.png")


Plot = Callable[[], Path]


def plot_jobs(run: RunResult, directory: Path, observable_bins: np.ndarray | None = None) -> list[Plot]:
    """Every plot of a run as a call that draws it; the observable plot only for sources that define one."""
    jobs: list[Plot] = [lambda: plot_training(run, directory)]
    for s in run.sources:
        jobs.append(lambda s=s: plot_channels(s, directory))
        jobs.append(lambda s=s: plot_weights(s, directory))
        if (
            observable_bins is not None
            and s.events.sample_observable is not None
            and s.events.event_observable is not None
        ):
            jobs.append(lambda s=s: plot_observable(s, directory, observable_bins))
    return jobs


def plot_run(
    run: RunResult, directory: Path, observable_bins: np.ndarray | None = None, processes: int = 1
) -> list[Path]:
    """All plots of a run (:func:`plot_jobs`), on ``processes`` cores (1, or 2 and more: two; module docstring)."""
    jobs = plot_jobs(run, directory, observable_bins)
    if processes < 2 or len(jobs) < 2 or not hasattr(os, "fork"):
        return [job() for job in jobs]
    read_end, write_end = os.pipe()
    child = os.fork()
    theirs = len(jobs) // 2  # the child draws jobs[theirs:]: the training plot, first, costs about two others
    if child == 0:  # names each file it drew; never returns (no cleanup, no output of its own)
        os.close(read_end)
        try:
            for index in range(theirs, len(jobs)):
                os.write(write_end, f"{index}\t{jobs[index]()}\n".encode())
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    try:
        drawn = {index: jobs[index]() for index in range(theirs)}
    finally:
        with os.fdopen(read_end, "rb") as pipe:
            reported = pipe.read().decode()
        os.waitpid(child, 0)
    for line in reported.splitlines():
        index, path = line.split("\t")
        drawn[int(index)] = Path(path)
    return [drawn[index] if index in drawn else jobs[index]() for index in range(len(jobs))]
