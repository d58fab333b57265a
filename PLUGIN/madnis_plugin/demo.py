"""``madnis-mg5 demo``: MadNIS on the built-in p p -> e+ e- (optionally + Z') without MG5aMC.

Trains with live progress, prints the cross section like MadEvent and the unweighting efficiency, and
writes DIR/events.lhe.gz (MadEvent format), DIR/report.html and PNG plots (training, channel
contributions trained vs prior, weight distribution, m_ll of the events vs the weighted truth).
The trained sampler is saved as DIR/<process>.madnis.pt; ``--reuse`` loads it instead of training.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from madnis.config import AUTO

from .builtin.drell_yan import DrellYan, DrellYanSetup, ZPrime
from .lhe import Banner, LHEInit, run_card_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=10000, help="unweighted events to write (default 10000)")
    parser.add_argument("--zprime", action="store_true", help="add a narrow Z' (400 GeV, width 2 GeV, Z couplings)")
    parser.add_argument("--output", default="madnis_demo", help="output directory (default ./madnis_demo)")
    parser.add_argument(
        "--steps",
        type=steps_argument,
        default=AUTO,
        help="training steps, or auto (default): while the projected time to --events falls",
    )
    parser.add_argument("--batch-size", type=int, default=1024, help="points per training step (default 1024)")
    parser.add_argument("--integration-points", type=int, default=100_000, help="points for the final integral")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="training device (default cpu)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="re-use the sampler an earlier run trained in the output directory (skips training; "
        "another --seed gives independent events)",
    )


def steps_argument(text: str) -> int | str:
    """``--steps``: ``auto`` or a number of steps."""
    return AUTO if text.strip().lower() == AUTO else int(text)


def m_ll(momenta: torch.Tensor) -> np.ndarray:
    """Invariant mass of the lepton pair (particles 3 and 4) from (n, 4, 4) momenta (E, px, py, pz)."""
    pair = momenta[:, 2] + momenta[:, 3]
    return torch.sqrt((pair[:, 0] ** 2 - (pair[:, 1:] ** 2).sum(1)).clamp(min=0)).numpy()


def _cards(setup: DrellYanSetup, args: argparse.Namespace) -> Banner:
    ew = setup.ew
    proc = "import model sm\ngenerate p p > e+ e-\n# built-in madnis-mg5 demo (torch matrix element, no MG5aMC)"
    if setup.zprime is not None:
        zp = setup.zprime
        proc += f"\n# plus Z': mass {zp.mass} GeV, width {zp.width} GeV, couplings {zp.coupling_scale} x Z"
    run = run_card_text(
        [
            (args.events, "nevents", "Number of unweighted events requested"),
            (args.seed, "iseed", "rnd seed"),
            (1, "lpp1", "beam 1 type"),
            (1, "lpp2", "beam 2 type"),
            (setup.sqrt_s / 2, "ebeam1", "beam 1 total energy in GeV"),
            (setup.sqrt_s / 2, "ebeam2", "beam 2 total energy in GeV"),
            ("nn23lo1", "pdlabel", "PDF set"),
            (247000, "lhaid", "LHAPDF id of the PDF set"),
            (-1, "dynamical_scale_choice", "m_ll = sqrt(s-hat) for Drell-Yan at LO"),
            ("average", "event_norm", "average/sum. Normalization of the weight in the LHEF"),
            (setup.ptl, "ptl", "minimum pt for the charged leptons"),
            (setup.etal, "etal", "max rap for the charged leptons"),
            (setup.drll, "drll", "min distance between leptons"),
            (setup.mmll, "mmll", "min invariant mass of l+l-"),
            (True, "madnis", "MadNIS neural importance sampling"),
            (args.steps, "madnis_steps", "training steps"),
            (args.device, "madnis_device", "training device"),
            (args.reuse, "madnis_reuse", "re-use the trained sampler"),
        ]
    )
    param = "\n".join(
        [
            "BLOCK MASS #",
            f"    23 {ew.MZ:.6e} # MZ",
            "BLOCK SMINPUTS #",
            f"    1 {ew.aEWM1:.6e} # aEWM1",
            f"    2 {ew.Gf:.6e} # Gf",
            f"DECAY  23 {ew.WZ:.6e} # WZ",
        ]
    )
    return Banner(proc_card=proc, run_card=run, param_card=param)


def run(args: argparse.Namespace) -> int:
    from madnis import TrainingConfig

    from .run import ProcessSource, RunCheckError, RunSettings, SamplerReuseError, run_processes
    from .run.plots import plot_run
    from .run.report import write_report

    if args.events < 1:
        print("error: --events must be >= 1", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)  # batches of ~1000 points: extra threads only spin, worst on a shared machine
    start = time.time()
    output = Path(args.output)
    setup = DrellYanSetup(zprime=ZPrime() if args.zprime else None)
    process = DrellYan(setup)
    name = "drell_yan_zprime" if args.zprime else "drell_yan"
    source = ProcessSource(
        name=name,
        integrand=process,
        event_records=process.event_records,
        channel_names=[{"a": "photon", "z": "Z", "zp": "Z'"}[c] for c in process.channel_names],
        observable=m_ll,
        observable_label="m_ll [GeV]",
    )
    training = TrainingConfig(
        steps=args.steps, batch_size=args.batch_size, learning_rate=3e-3, seed=args.seed, device=args.device
    )
    settings = RunSettings(
        nevents=args.events,
        output_dir=output,
        training=training,
        integration_points=args.integration_points,
        progress_every=10 if args.steps == AUTO else max(1, args.steps // 15),
        reuse=args.reuse,
    )
    try:
        result = run_processes([source], settings, _cards(setup, args), LHEInit(processes=[]))
    except SamplerReuseError as error:
        print(f"error: --reuse: {error}", file=sys.stderr)
        return 2
    except RunCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: no event file was written", file=sys.stderr)
        return 130
    bins = np.geomspace(2 * setup.ptl, 1000.0 if args.zprime else 300.0, 70)
    plots = plot_run(result, output, observable_bins=bins)
    report = write_report(
        result, output / "report.html", plots, f"madnis-mg5 demo: p p -> e+ e- ({name})", settings_text=str(training)
    )
    print(
        f"Cross section: {result.cross_section:.6g} +- {result.error:.3g} pb   "
        f"unweighting efficiency: {100 * result.efficiency:.2f}%"
    )
    print(f"Events: {result.lhe_path}\nReport: {report}\nTotal time: {time.time() - start:.1f} s")
    return 0
