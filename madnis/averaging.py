"""The trainable parameters averaged over the latest training steps, which the sampler takes after long trainings.

Why: at a constant learning rate the parameters keep jumping around their optimum, and the last step's sampler
carries that noise; an average over the latest steps (Polyak averaging, here an exponential moving average with
``DECAY``, about the latest 20 steps) removes it without a schedule that needs to know where training ends
(``steps = auto`` does not). Measured on fixed budgets (``benchmarks/results/stop38_measurements.md``, 300k weighted
points each): ``p p > t t~ j``'s ``P1_gg_ttxg``, 3 seeds, at 300 steps the average unweights at 33.6 % against the last
parameters' 25.1 %, at 200 steps 23.5 % against 22.4 %, but at 160 steps 15.9 % against 18.4 % and at 120 steps 9.4 %
against 12.4 %: early on the sampler still improves fast, and the average lags behind it; a ``g g > w+ d u~ g``
channel part at 500 steps, 4 seeds: 0.86, 1.98, 0.63 and 1.05 % against 0.93, 0.31, 0.40 and 0.28 %. An average over
a share of the steps instead (polynomial-decay averaging, the latest ~11 %) did as well on ``P1_gg_ttxg`` and worse on
the W+2j part (0.62 and 0.36 %).

So once training made ``MIN_HORIZONS`` of the average's horizons (200 steps), the sampler takes the average when
training ends (before each efficiency check; a resumed training goes on from the last step's parameters); shorter
trainings keep the last step's. From 200 steps the average unweighted better in 8 of 10 of the trainings above (the two
losses 21.4 -> 20.1 % and 0.93 -> 0.86 %; the gains up to 21.8 -> 36.2 % and 0.31 -> 1.98 %). Whole launches:
``p p > t t~ j`` at 100k events 29.6 against 26.3 % (4 seeds, each higher; the first form below, which took the
average on the ``g g`` P-dir in all four), ``g g > w+ d u~ g`` at 10k events 2.40 against 1.55 % for that choice
from 200 steps (3 seeds, each higher), errors alike.

Tried first: choosing between the two by the unweighting efficiency each would have on the latest buffered online
batches (each point counted q_model / q_sample times). It picked the better one in 10 of 12 ``P1_gg_ttxg`` trainings
of 120-300 steps but in 1 of 4 on the W+2j part, whose weight tail the buffer's 10k points do not see (estimates
2-12 % where fresh points unweight at 0.3-2 %): 0.52 % there against 1.13 % for the average alone; and in whole
10k-event launches it took the average at steps 100 and 149 on thin margins where it unweighted worse (checks of 6.7
and 14.3 % against 9.0 and 16.7 % with the last step's). The training loss on the same points picked the better in 7
of 12 (the average's gain is in the weight tail, which a loss hardly sees).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DECAY = 0.95  # each step's weight in the average falls by this factor per later step (module docstring)
MIN_HORIZONS = 10  # the sampler takes the average after this many of its horizons 1 / (1 - DECAY): 200 steps


def horizon(decay: float) -> float:
    """The steps an exponential moving average with ``decay`` spans: 1 / (1 - decay)."""
    return 1 / (1 - decay)


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
        return self.steps >= MIN_HORIZONS * horizon(self.decay)

    def state_dict(self) -> dict:
        return {"value": self.value.clone(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.value.copy_(state["value"])
        self.steps = int(state["steps"])


@dataclass(frozen=True)
class AveragedParameters:
    """After ``step`` training steps the sampler took the parameters averaged with ``decay``."""

    step: int
    decay: float

    def describe(self) -> str:
        return (
            f"parameters after step {self.step}: averaged over the latest ~{horizon(self.decay):.0f} steps "
            f"(an exponential moving average, decay {self.decay})"
        )
