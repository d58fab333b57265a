"""The trainable parameters averaged over the latest training steps, and the choice between them and the last.

Why: at a constant learning rate the parameters keep jumping around their optimum, and the last step's sampler
carries that noise; an average over the latest steps (Polyak averaging, here an exponential moving average with
``DECAY``, about the latest 20 steps) removes it without a schedule that needs to know where training ends
(``steps = auto`` does not). Measured on fixed budgets (``benchmarks/results/stop38_measurements.md``, 300k weighted
points each): ``p p > t t~ j``'s ``P1_gg_ttxg``, 3 seeds, at 300 steps the average unweights at 33.6 % against the last
parameters' 25.1 %, at 200 steps 23.5 % against 22.4 %, but at 160 steps 15.9 % against 18.4 % and at 120 steps 9.4 %
against 12.4 %: early on the sampler still improves fast, and the average lags behind it; a ``g g > w+ d u~ g`` channel
part at 500 steps, 4 seeds: 0.86, 1.98, 0.63 and 1.05 % against 0.93, 0.31, 0.40 and 0.28 %. An average over a share of the steps instead
(polynomial-decay averaging, the latest ~11 %) did as well on ``P1_gg_ttxg`` and worse on the W+2j part (0.62 and
0.36 %).

So after ``MIN_HORIZONS`` of the average's horizons (200 steps; shorter trainings keep the last step's parameters)
the sampler takes whichever of the two unweights better on the latest online batches (the sample buffer's,
:mod:`madnis.buffer`): each point's weight under the candidate parameters, counted q_model / q_sample times, gives
that sampler's efficiency by MadEvent's rule (:func:`madnis.unweighting.max_weight`); a paired comparison on the same
points, with no integrand call of its own. It picked the one that unweights better on fresh points in 10 of 12
``P1_gg_ttxg`` trainings (120-300 steps; the two misses where both were within 0.4 % or the estimates within 1 %),
where the training loss on the same points (the moment-3 or variance loss) picked it in 7: the average's gain is in
the weight tail, which w_max sees and a loss hardly. On the W+2j part it picked the better in 1 of 4 (the buffer's
10k points do not see that weight tail: estimates of 2-12 % where fresh points unweight at 0.3-2 %), so there it is
no better than keeping the last step's parameters (0.52 % against 0.48 % on average; the average alone: 1.13 %).
Before 200 steps the estimate's misses cost more than its hits gain: whole 10k-event launches that compared from the
first step (``g g > t t~ g``, ``p p > t t~ j``, stops at steps 100-177) took the average on thin margins at steps 100
and 149 and measured 6.7 and 14.3 % on their checks where the last step's parameters measured 9.0 and 16.7 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DECAY = 0.95  # each step's weight in the average falls by this factor per later step (module docstring)
MIN_HORIZONS = 10  # the average is a candidate after this many of its horizons 1 / (1 - DECAY): 200 steps


class ParameterAverage:
    """Exponential moving average of ``flat`` (the optimiser's flat parameter buffer, :class:`madnis.adam.Adam`)."""

    def __init__(self, flat: torch.Tensor, decay: float = DECAY):
        self.flat, self.decay = flat, decay
        self.value = flat.detach().clone()
        self.steps = 0

    def update(self) -> None:
        """Take the parameters after one more optimiser step."""
        self.steps += 1
        self.value.lerp_(self.flat, 1 - self.decay)

    @property
    def ready(self) -> bool:
        """Enough steps that the average no longer lags a fast-improving sampler (module docstring)."""
        return self.steps >= MIN_HORIZONS / (1 - self.decay)

    def state_dict(self) -> dict:
        return {"value": self.value.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.value.copy_(state["value"])
        self.steps = int(state["steps"])


@dataclass(frozen=True)
class ParameterChoice:
    """Which parameters the sampler took after ``step`` steps: the average (``averaged``) or the last, by their
    unweighting efficiencies estimated on ``batches`` buffered online batches."""

    step: int
    averaged: bool
    efficiency_average: float
    efficiency_last: float
    batches: int

    def describe(self) -> str:
        share = f"the latest ~{1 / (1 - DECAY):.0f} steps"
        estimate = f"unweighting efficiency estimated on the latest {self.batches} online batches"
        if self.averaged:
            return (
                f"parameters after step {self.step}: averaged over {share} ({estimate}: "
                f"{100 * self.efficiency_average:.2f}% against {100 * self.efficiency_last:.2f}% with the last step's)"
            )
        return (
            f"parameters after step {self.step}: the last step's ({estimate}: "
            f"{100 * self.efficiency_last:.2f}% against {100 * self.efficiency_average:.2f}% averaged over {share})"
        )
