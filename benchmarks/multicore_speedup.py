"""Multicore speed-up of a MadNIS launch: run_mode 0 vs run_mode 2 (nb_core cores) on one process, back to back.

``generate PROCESS; output madnis DIR`` once, two copies with the same cards and seed, ``bin/generate_events``
with ``run_mode = 0`` and then with ``run_mode = 2``, ``nb_core = N`` (MadNIS as jobs through MG5aMC's
multicore pool, ``madnis_workers = auto``); wall time (compilation included in both) and cross section to
``benchmarks/results/multicore_speedup.json`` and ``.md``.

    python benchmarks/multicore_speedup.py "g g > w+ d u~ g" --nevents 10000 --nb-core 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from madnis_plugin.install import mg5_home

RESULTS = Path(__file__).resolve().parent / "results"


def launch(run_dir: Path, options: dict[str, object]) -> dict[str, float]:
    config = run_dir / "Cards" / "me5_configuration.txt"
    config.write_text(config.read_text() + "".join(f"\n{k} = {v}" for k, v in options.items()) + "\n")
    start = time.time()
    done = subprocess.run([str(run_dir / "bin" / "generate_events"), "-f"], cwd=run_dir, capture_output=True, text=True)
    seconds = time.time() - start
    found = re.findall(r"Cross-section :\s+([\d.eE+-]+) \+- ([\d.eE+-]+) pb", done.stdout + done.stderr)
    if not found:
        sys.exit(f"{run_dir}: no cross section\n{(done.stdout + done.stderr)[-3000:]}")
    return {"wall_s": round(seconds, 1), "xsec": float(found[-1][0]), "err": float(found[-1][1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("process")
    parser.add_argument("--nevents", type=int, default=10000)
    parser.add_argument("--nb-core", type=int, default=2)
    args = parser.parse_args()
    mg5 = mg5_home()
    work = Path(tempfile.mkdtemp(prefix="multicore_"))
    script = work / "out.mg5"
    script.write_text(f"set automatic_html_opening False\ngenerate {args.process}\noutput madnis {work / 'base'}\n")
    subprocess.run(
        [sys.executable, str(mg5 / "bin" / "mg5_aMC"), str(script)], cwd=work, check=True, capture_output=True
    )
    card = work / "base" / "Cards" / "run_card.dat"
    card.write_text(
        re.sub(r"^\s*\S+\s*=\s*nevents(\s)", rf"  {args.nevents} = nevents\1", card.read_text(), flags=re.M)
    )
    rows = []
    for mode, options in (
        ("run_mode 0", {"run_mode": 0}),
        (f"run_mode 2, nb_core {args.nb_core}", {"run_mode": 2, "nb_core": args.nb_core}),
    ):
        run_dir = work / mode.replace(" ", "_").replace(",", "")
        subprocess.run(["cp", "-r", str(work / "base"), str(run_dir)], check=True)
        rows.append({"process": args.process, "mode": mode, "nevents": args.nevents, **launch(run_dir, options)})
        print(rows[-1], flush=True)
    speedup = rows[0]["wall_s"] / rows[1]["wall_s"]
    date = datetime.date.today().isoformat()
    (RESULTS / "multicore_speedup.json").write_text(
        json.dumps({"date": date, "cpus": os.cpu_count(), "rows": rows, "speedup": speedup}, indent=1)
    )
    lines = [
        f"# MadNIS multicore speed-up ({date}, {os.cpu_count()} CPUs, shared machine)\n",
        f'`python benchmarks/multicore_speedup.py "{args.process}" --nevents {args.nevents} --nb-core {args.nb_core}`'
        " (default cards otherwise, compilation included, measured back to back)\n",
        "| process | mode | nevents | wall [s] | sigma [pb] |",
        "|---|---|---|---|---|",
        *(
            f"| `{r['process']}` | {r['mode']} | {r['nevents']} | {r['wall_s']} | {r['xsec']} +- {r['err']} |"
            for r in rows
        ),
        f"\nSpeed-up: {speedup:.2f}x\n",
    ]
    (RESULTS / "multicore_speedup.md").write_text("\n".join(lines))
    print(f"speed-up {speedup:.2f}x")


if __name__ == "__main__":
    main()
