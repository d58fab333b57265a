"""Does the quoted error cover? Pulls of many MadNIS integrations of one P-dir against a converged reference.

Why: a cross section whose error is too small is wrong however close it looks (issue 11). A weight tail that a
finite sample misses makes the mean low and its variance low with it; ``madnis.tails`` adds the expected
contribution of the missed tail to the error. This benchmark trains ``--seeds`` samplers the way a launch does
(plugin defaults, ``madnis_steps = auto`` for ``--nevents``), integrates each with ``--streams`` independent
random streams of ``--points`` points, and reports for every integration the pull against the reference with
the statistical error alone and with the weight-tail term, then the share of pulls beyond 2 and 3.
Writes ``benchmarks/results/<output>.json`` and ``.md``.

    python benchmarks/coverage.py WZZ/SubProcesses/P1_qq_wpzz --reference 0.0085466 0.0000045 \
        --seeds 0 1 2 3 --streams 5 --points 200000 --output coverage
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

from madnis_plugin.bridge_integrand import BridgeIntegrand
from madnis_plugin.settings import MadnisSettings, card_training

from fortran_bridge import ProcessLibrary
from madnis import MadNIS
from madnis.config import AUTO

RESULTS = Path(__file__).resolve().parent / "results"


def pull(value: float, error: float, reference: tuple[float, float]) -> float:
    return (value - reference[0]) / math.hypot(error, reference[1])


def measure(args: argparse.Namespace, log=print) -> list[dict]:
    rows = []
    settings = MadnisSettings(training=replace(card_training(), steps=AUTO))
    for seed in args.seeds:
        with ProcessLibrary(Path(args.pdir), seed=seed, workers=1) as library:
            madnis = MadNIS(BridgeIntegrand(library), settings.training_config(seed))
            start = time.time()
            history = madnis.train(None, args.nevents)
            log(f"seed {seed}: {len(history)} steps, {time.time() - start:.0f} s")
            for stream in range(args.streams):
                result = madnis.integrate(args.points, seed=10_000 * (seed + 1) + stream)
                statistical = math.sqrt(max(result.error**2 - result.tail_error**2, 0.0))
                row = {
                    "seed": seed,
                    "steps": len(history),
                    "stream": stream,
                    "points": result.n_points,
                    "sigma": result.integral,
                    "error": result.error,
                    "statistical_error": statistical,
                    "tail_error": result.tail_error,
                    "pull": pull(result.integral, result.error, args.reference),
                    "pull_statistical": pull(result.integral, statistical, args.reference),
                }
                rows.append(row)
                log(
                    f"  stream {stream}: {result.integral:.6g} +- {result.error:.3g} (tail {result.tail_error:.2g}) "
                    f"pull {row['pull']:+.2f} (statistical only {row['pull_statistical']:+.2f})"
                )
    return rows


def summary(rows: list[dict], key: str) -> dict[str, float]:
    pulls = [r[key] for r in rows]
    n = len(pulls)
    mean = sum(pulls) / n
    return {
        "mean": mean,
        "sd": math.sqrt(sum((p - mean) ** 2 for p in pulls) / max(n - 1, 1)),
        "share_beyond_2": sum(abs(p) > 2 for p in pulls) / n,
        "share_below_-2": sum(p < -2 for p in pulls) / n,
        "share_beyond_3": sum(abs(p) > 3 for p in pulls) / n,
    }


def write(rows: list[dict], args: argparse.Namespace, command: str) -> None:
    process = Path(args.pdir).name
    totals = {"with_tail": summary(rows, "pull"), "statistical_only": summary(rows, "pull_statistical")}
    data = {
        "process_dir": process,
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'})",
        "reference": list(args.reference),
        "nevents": args.nevents,
        "summary": totals,
        "rows": rows,
    }
    (RESULTS / f"{args.output}.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        f"# Coverage of the quoted error: {process}",
        "",
        f"`{command}`  ",
        f"{data['date']}, {data['machine']}; samplers trained as a launch does (plugin defaults, "
        f"`madnis_steps = auto` for {args.nevents} events), reference {args.reference[0]} +- {args.reference[1]} pb.",
        "",
        "| error | integrations | mean pull | sd of pulls | share abs(pull) > 2 | share pull < -2 | share abs(pull) > 3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in totals.items():
        lines.append(
            f"| {name.replace('_', ' ')} | {len(rows)} | {s['mean']:+.2f} | {s['sd']:.2f} | "
            f"{100 * s['share_beyond_2']:.0f} % | {100 * s['share_below_-2']:.0f} % | {100 * s['share_beyond_3']:.0f} % |"
        )
    lines += ["", "Nominal (Gaussian): 4.6 % beyond 2, 2.3 % below -2, 0.3 % beyond 3.", ""]
    lines += ["| seed | steps | stream | sigma (pb) | error | tail part | pull | pull (statistical only) |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['steps']} | {r['stream']} | {r['sigma']:.6g} | {r['error']:.2g} | "
            f"{r['tail_error']:.2g} | {r['pull']:+.2f} | {r['pull_statistical']:+.2f} |"
        )
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdir", help="a SubProcesses/P* directory of an `output madnis` process")
    parser.add_argument("--reference", type=float, nargs=2, required=True, metavar=("SIGMA", "ERROR"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--streams", type=int, default=5, help="integrations per trained sampler")
    parser.add_argument("--points", type=int, default=200_000, help="points per integration")
    parser.add_argument("--nevents", type=int, default=1000, help="the events madnis_steps = auto trains for")
    parser.add_argument("--output", default="coverage")
    args = parser.parse_args(argv)
    shown = [
        Path(a).relative_to(Path(args.pdir).parents[1].parent) if a == args.pdir else a for a in argv or sys.argv[1:]
    ]
    command = "python benchmarks/coverage.py " + " ".join(map(str, shown))  # the P-dir from its `output madnis` dir
    write(measure(args), args, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
