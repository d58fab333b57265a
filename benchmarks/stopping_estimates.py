"""How well does ``steps = auto`` know the unweighting efficiency while it trains? Estimators against the truth.

Trains one P-dir with the plugin's default settings in segments of ``--segment`` steps; after each segment the
truth is the multichannel efficiency (:attr:`madnis.IntegrationResult.unweighting_efficiency`, MadEvent's rule
with share 1e-3 per channel, channels drawn ∝ w_max_i as the plugin's unweighting does) of a fresh integration
with ``--points`` points, and the estimators use only the last ``--window`` online training batches:

- median: the median of each batch's own efficiency (the rule before this study),
- pooled: the efficiency of the window's batches pooled (what :mod:`madnis.stopping` uses, then extrapolated),
- pooled multichannel: sum_i I_i / sum_i w_max_i of the pooled window per channel,
- pooled 4 windows: the last 4 x ``--window`` batches pooled,
- rule: what :class:`madnis.stopping.StoppingRule` projects with (the pooled window extrapolated by its halves to the
  sample ``--events`` events need),
- tail fit: the large-sample value of a generalized Pareto tail fitted to the pooled window's k = sqrt(n) largest
  weights (:func:`madnis.tails.fit_gpd`): w_max solves p_k E[(Y - y)+] = 1e-3 <w> for the fitted excess Y above the
  (k+1)-th largest weight, p_k = k / n (a candidate for the rule, stop 39; not adopted).

Writes ``benchmarks/results/NAME.md`` (``--name``, default ``stopping_estimates``).

    python benchmarks/stopping_estimates.py WJJ/SubProcesses/P1_gg_wpqqg --segment 250 --segments 8
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch
from madnis_plugin.bridge_integrand import BridgeIntegrand
from madnis_plugin.settings import MadnisSettings, card_training

from fortran_bridge import ProcessLibrary
from madnis import MadNIS
from madnis.stopping import StoppingRule
from madnis.tails import fit_top
from madnis.training import OnlineBatch, Trainer
from madnis.unweighting import channel_max_weights, madevent_efficiency, multichannel_efficiency

RESULTS = Path(__file__).resolve().parent / "results"
RULE = 1e-3


def efficiency(weights: torch.Tensor) -> float:
    return madevent_efficiency(weights, RULE)


def tail_fit_efficiency(weights: torch.Tensor) -> float:
    """The "tail fit" estimator of the module docstring (the fit of :func:`madnis.tails.fit_top`)."""
    ordered = weights.abs().double().sort(descending=True).values
    n, mean = len(ordered), float(ordered.mean())
    fit = fit_top(ordered, n)
    if fit is None:  # no tail to fit: the sample's own
        return efficiency(ordered)
    k, threshold, _, xi, scale = fit
    p_k, allowed = k / n, RULE * mean
    if p_k * scale / (1 - xi) <= allowed:  # w_max lies below the fitted tail: the sample's own
        return efficiency(ordered)
    if abs(xi) < 1e-9:
        excess = scale * math.log(p_k * scale / allowed)
    else:
        z = (allowed * (1 - xi) / (p_k * scale)) ** (xi / (xi - 1))
        excess = scale * (z - 1) / xi
    return mean / (threshold + excess)


def estimates(
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], window: int, n: int, events: float
) -> dict:
    """The estimators of the module docstring from (channel, w / p_i, p_i per channel) of the online batches."""
    last = batches[-window:]
    pooled = torch.cat([w for _, w, _ in last])
    rule = StoppingRule(events, window=window, max_overweight=RULE)
    rule.batches.extend(w for _, w, _ in last)
    channel = torch.cat([c for c, _, _ in last])
    within = torch.cat([w * share[c] for c, w, share in last])
    integrals = torch.zeros(n, dtype=torch.float64).index_add(0, channel, within)
    integrals /= torch.bincount(channel, minlength=n).clamp_min(1)
    return {
        "median": float(torch.tensor([efficiency(w) for _, w, _ in last]).median()),
        "pooled": efficiency(pooled),
        "pooled multichannel": multichannel_efficiency(integrals, channel_max_weights(within, channel, n, RULE)),
        "pooled 4 windows": efficiency(torch.cat([w for _, w, _ in batches[-4 * window :]])),
        "rule": rule.efficiency(events),
        "tail fit": tail_fit_efficiency(pooled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdir", type=Path)
    parser.add_argument("--segment", type=int, default=250)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--events", type=float, default=5000, help="the events the rule extrapolates to")
    parser.add_argument("--name", default="stopping_estimates", help="stem of the result file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    online_batch = Trainer._online_batch

    def recording(self: Trainer, online_step: int) -> OnlineBatch:
        drawn = online_batch(self, online_step)
        channel = drawn.batch.channel.cpu()
        share = torch.bincount(channel, minlength=self.sampler.n_channels).double() / len(channel)
        batches.append((channel, drawn.event_weights.double().abs().cpu(), share))
        return drawn

    Trainer._online_batch = recording  # type: ignore[method-assign]
    settings = MadnisSettings(training=replace(card_training(), steps=args.segment))
    rows = []
    with ProcessLibrary(args.pdir, seed=0, workers=1) as library:
        madnis = MadNIS(BridgeIntegrand(library), settings.training_config(0))
        for segment in range(args.segments):
            madnis.train()
            truth = madnis.integrate(args.points, seed=100 + segment).unweighting_efficiency
            rows.append(
                {
                    "steps": (segment + 1) * args.segment,
                    "truth": truth,
                    **estimates(batches, args.window, madnis.sampler.n_channels, args.events),
                }
            )
            print(rows[-1], flush=True)
    names = list(rows[0])[1:]
    lines = [
        "# The efficiency `steps = auto` sees while training, against the truth",
        "",
        f"- command: `python benchmarks/stopping_estimates.py {args.pdir.name} --segment {args.segment} "
        f"--segments {args.segments} --window {args.window} --points {args.points} --events {args.events:g} "
        f"--name {args.name}` (the P-dir of `output madnis`)",
        f"- machine: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 thread",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| steps | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        *[f"| {r['steps']} | " + " | ".join(f"{100 * r[k]:.2f} %" for k in names) + " |" for r in rows],
        "",
        "truth: multichannel efficiency of a fresh integration (share 1e-3 per channel); the others from the last "
        f"{args.window} online batches of 1024 points (see the script's docstring).",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
