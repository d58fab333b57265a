"""The reference library, PyPI ``madnis==1.0.0``, trained on one of this project's toys; run by benchmarks/toys.py.

Both libraries import as ``madnis``, so this script runs in a separate Python environment that has
``madnis==1.0.0`` (and ``vegas`` for the VEGAS rows) instead of this project:

    /path/to/venv/bin/python benchmarks/madnis_reference.py --variant defaults --out weights.pt

This project's toy integrand is loaded from the repository as the package ``madnis_mg5`` (its modules
import each other relatively, so nothing of the reference library is shadowed). The script trains
``madnis.integrator.Integrator`` (reference defaults, or a variant), then draws ``--points`` weighted
points with the channels shared by their integral (estimated on 20,000 pilot points per channel):
n_c = points * p_c from channel c, weight alpha_c f / q_c / p_c, so E[w] = I. It saves the weights and
the training wall time to ``--out``; benchmarks/toys.py computes the metrics with the same code as for
this project's rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "defaults": "madnis 1.0 Integrator defaults (constant lr 1e-3, uniform channel ratio 1, stratified variance)",
    "vegas_cosine": "VEGAS initialisation (10 iterations x batch per channel, 64 bins) + cosine lr decay to 0",
}


def load_project_toys(name: str = "madnis_mg5"):
    """This repository's ``madnis.toys``, imported as ``{name}.toys``."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "madnis" / "__init__.py", submodule_search_locations=[str(ROOT / "madnis")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.toys")


def reference_integrand(toy):
    """The toy as a madnis 1.0 ``Integrand``: (r, c) -> (value, features, prior channel weights)."""
    from madnis.integrator import Integrand

    def function(r: torch.Tensor, channel: torch.Tensor):
        result = toy(r.double(), channel).checked()
        value = torch.where(result.ok, result.value, torch.zeros_like(result.value))
        return value.to(r.dtype), result.features.to(r.dtype), result.alpha_prior.to(r.dtype)

    return Integrand(
        function,
        input_dim=toy.ndim,
        channel_count=toy.n_channels,
        remapped_dim=toy.n_features,
        has_channel_weight_prior=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy", default="4d_mapped", choices=["4d_mapped", "4d_unmapped"])
    parser.add_argument("--variant", default="defaults", choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--points", type=int, default=200_000, help="weighted points drawn in total")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from madnis.integrator import Integrator  # the reference library (this script's environment)

    toys = load_project_toys()
    toy = toys.TwoResonances4D(mapped=args.toy == "4d_mapped")
    integrand = reference_integrand(toy)
    scheduler = None
    if args.variant == "vegas_cosine":
        scheduler = lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)  # noqa: E731
    integrator = Integrator(integrand, batch_size=args.batch_size, scheduler=scheduler)
    start = time.perf_counter()
    if args.variant == "vegas_cosine":
        from madnis.integrator import VegasPreTraining

        vegas = VegasPreTraining(integrator)
        vegas.train([args.batch_size] * 10)
        vegas.initialize_integrator()
    integrator.train(args.steps)
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        pilot = [integrator.sample(20_000, channel=c).weights.double().mean() for c in range(toy.n_channels)]
        share = torch.stack(pilot).abs() / torch.stack(pilot).abs().sum()
        counts = [max(1, round(args.points * float(p))) for p in share]
        weights = torch.cat(
            [integrator.sample(n, channel=c).weights.double() * args.points / n for c, n in enumerate(counts)]
        )
    torch.save(
        dict(
            weights=weights,
            train_seconds=train_seconds,
            steps=args.steps,
            version=version("madnis"),
            variant=VARIANTS[args.variant],
        ),
        args.out,
    )


if __name__ == "__main__":
    main()
