"""Physics checks of bridge output shared by the toy and the MG5 bridge tests."""

from __future__ import annotations

import numpy as np


def record_problems(records, index: int) -> list[str]:
    """What is wrong with Les Houches record ``index`` (empty list if it is consistent)."""
    n = int(records.nup[index])
    status = records.status[index, :n]
    color = records.color[index, :n]
    mothers = records.mothers[index, :n]
    momenta = records.momenta[index, :n]
    problems = []
    # colour: over incoming and final particles every tag is once an (effective outgoing)
    # colour and once an anticolour; an incoming colour counts as an outgoing anticolour
    external = np.abs(status) == 1
    eff = np.where((status == -1)[:, None], color[:, ::-1], color)[external]
    tags_c, count_c = np.unique(eff[:, 0][eff[:, 0] > 0], return_counts=True)
    tags_a, count_a = np.unique(eff[:, 1][eff[:, 1] > 0], return_counts=True)
    if not (np.array_equal(tags_c, tags_a) and (count_c == 1).all() and (count_a == 1).all()):
        problems.append(f"colour lines {color.tolist()} (status {status.tolist()})")
    # mothers: incoming have none, others point at existing entries other than themselves
    for i in range(n):
        m1, m2 = mothers[i]
        if status[i] == -1:
            if m1 or m2:
                problems.append(f"incoming entry {i + 1} has mothers {m1, m2}")
        elif not (1 <= m1 <= n and 0 <= m2 <= n and m1 != i + 1 and m2 != i + 1):
            problems.append(f"entry {i + 1} has mothers {m1, m2}")
    # resonances carry the sum of their daughters' momenta; final = initial momentum
    for i in np.flatnonzero(status == 2):
        daughters = np.flatnonzero(mothers[:, 0] == i + 1)
        if len(daughters) == 0 or not np.allclose(
            momenta[daughters, :4].sum(0), momenta[i, :4], rtol=1e-6, atol=1e-6 * momenta[i, 3]
        ):
            problems.append(f"resonance {i + 1} momentum differs from its daughters'")
    p_in = momenta[status == -1, :4].sum(0)
    p_out = momenta[status == 1, :4].sum(0)
    if not np.allclose(p_in, p_out, rtol=0, atol=1e-7 * p_in[3]):
        problems.append(f"momentum not conserved: {p_in} -> {p_out}")
    return problems


def momentum_problems(momenta: np.ndarray, ninitial: int, masses: np.ndarray) -> list[str]:
    """Conservation (1e-9 relative) and on-shell check of (n, nexternal, 4) (E, px, py, pz)."""
    problems = []
    balance = momenta[:, :ninitial].sum(1) - momenta[:, ninitial:].sum(1)
    scale = momenta[:, :ninitial, 0].sum(1)
    if (np.abs(balance).max(1) > 1e-9 * scale).any():
        problems.append(f"4-momentum not conserved: worst {np.abs(balance).max(1).max()} GeV")
    m2 = momenta[..., 0] ** 2 - (momenta[..., 1:] ** 2).sum(-1)
    if (np.abs(m2 - masses**2) > 1e-6 * momenta[..., 0] ** 2 + 1e-6).any():
        problems.append(f"off-shell: worst |m^2 - M^2| = {np.abs(m2 - masses**2).max()}")
    return problems
