"""A small self-contained HTML report of one run: cross sections, channels, efficiency, plots."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from .orchestrate import RunResult, channel_names


def write_report(run: RunResult, path: Path, plots: Sequence[Path], title: str, settings_text: str = "") -> Path:
    """Write ``path`` (atomically) linking the PNGs by relative name."""
    rows = []
    for s in run.sources:
        for c, name in zip(s.result.channels, channel_names(s)):
            rows.append(
                f"<tr><td>{html.escape(s.source.name)}</td><td>{html.escape(name)}</td>"
                f"<td>{c.integral:.5g}</td><td>{c.error:.3g}</td><td>{100 * c.fraction:.2f}%</td>"
                f"<td>{100 * s.events.prior_fractions[c.channel]:.2f}%</td></tr>"
            )
    sources = "".join(
        f"<tr><td>{html.escape(s.source.name)}</td><td>{s.result.integral:.6g} &plusmn; {s.result.error:.3g}</td>"
        f"<td>{s.n_events}</td><td>{100 * s.events.efficiency:.2f}%</td><td>{s.events.n_overweight}</td><td>{s.n_calls:,} ({s.training_calls:,} + {s.weighted_points:,} + {s.event_record_calls:,})</td>"
        f"<td>{s.trained.seconds:.1f}{' (sampler re-used)' if s.trained.reused_from else ''}</td></tr>"
        for s in run.sources
    )
    images = "".join(
        f'<figure><img src="{html.escape(p.name)}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in plots
    )
    text = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #bbb;padding:3px 8px}}
figure{{display:inline-block;margin:8px}}img{{max-width:620px}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><b>Cross section: {run.cross_section:.6g} &plusmn; {run.error:.3g} pb</b> (a weight-tail part of
{run.tail_error:.3g} pb in quadrature: <code>madnis/tails.py</code>), {run.nevents} unweighted events in
<code>{html.escape(run.lhe_path.name if run.lhe_path else "-")}</code>, unweighting efficiency {100 * run.efficiency:.2f}%,
{run.n_calls:,} matrix-element calls ({run.n_inside:,} inside the cuts, the points stock MadEvent counts: unweighting
efficiency {100 * run.efficiency_inside:.2f}% per point inside the cuts), wall time {run.seconds:.1f} s.</p>
<h2>Processes</h2><table><tr><th>process</th><th>sigma [pb]</th><th>events</th><th>efficiency</th><th>overweight</th>
<th>matrix-element calls (training + weighted points + event records)</th><th>training [s]</th></tr>{sources}</table>
<h2>Channels</h2><table><tr><th>process</th><th>channel</th><th>sigma_i [pb]</th><th>error</th><th>share (trained)</th>
<th>share (prior alpha)</th></tr>{"".join(rows)}</table>
<h2>Plots</h2>{images}
<h2>Settings</h2><pre>{html.escape(settings_text)}</pre>
</body></html>
"""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
