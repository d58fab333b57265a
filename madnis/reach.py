"""Does the trained sampler still reach what training saw? Its integral against the first half of the training batches.

Why: a flow can stop sampling a region of its channel, and its integral then comes out low with a small error that no
weight shows: the weight-tail part of the error (:mod:`madnis.tails`) sees only weights that are drawn. Measured on
``p p > e+ e- j`` with learning rate 5e-3 (``benchmarks/results/stop45_measurements.md`` section 2): 2 of 8 launches
quoted 232.4 +- 0.54 and 244.2 +- 0.57 pb against ~252, the ``g q`` P-dir's flow no longer drawing ~11 % of its
cross section; its online batches had reached 170-217 pb up to step ~150 and 160-178 pb after it.

Every online batch of training is an importance sample of the same I (:mod:`madnis.training`), whatever flow drew it.
The batches of the first half of training were drawn by earlier flows, which still drew a region that a later closing
leaves, so their mean, with the standard error of their spread, is a reference that the final integral must reach: a
final integral more than :data:`REACH_SIGMAS` combined errors below it says that a region drawn in training is no
longer drawn. Its holes (``benchmarks/results/stop46_measurements.md`` section 3): a closing inside the first half
dilutes the reference (learning rate 1e-2: one launch 16 sigma low, its check -2.4), and a loss of a few % hides in
the reference's error (5e-3: one launch 3.7 sigma low).
The spread of the batch means, not their own errors, sets the reference's error: one batch with a large weight moves
the mean by as much as it widens the error (the pull of such a batch stays ~1), and batches whose weights miss their
flow's tail are low, which a test for a final integral *below* the reference never counts against it. Only a low
final integral fails it: a high one is a tail that training's batches had not drawn yet, which the weight-tail part of
the final error covers.

What follows a failed check: automatic training (``steps = "auto"``) checks the fresh points of each efficiency check,
drawn by the sampler it has just made (:meth:`madnis.MadNIS.train`). Where they fail, the points drawn so far are
dropped (their samplers left the region), the stopping rule starts afresh and training goes on with the next remedy:

1. MadEvent's channel weights alpha^MG in place of the learned ones (:meth:`madnis.MadNIS.use_prior_channel_weights`).
   The loss sees a channel's weight only where that channel's flow draws points, so moving a region's weight to a
   channel whose flow does not draw it *lowers* the estimated loss: the region's part of the integral just leaves the
   estimate. Seed 41 above: the learned weights had put the whole ``g q`` P-dir on one of its 4 channels, whose flow
   gave 168.1 +- 0.56 pb; the same flows with alpha^MG gave 185.1 +- 5.5 pb on 100k points
   (``benchmarks/sampler_reach.py``).
2. Where the channel weights were not learned (or the check fails again): the flat share :data:`FLAT_SHARE_ON_FAILURE`
   of each channel's points (:meth:`madnis.MadNIS.open_flat_share`, the defensive mixture of :mod:`madnis.sampler`).
   The share alone did not bring seed 41's region back: its f J reaches ~10^7 pb at single points, so drawing with
   the share gave 990 +- 823 pb on 120k points, and training on with it to the rule's next stop 167.5 +- 0.50 pb.

Both are kept in the configuration, so the saved sampler that generation jobs load draws the same way. The final
integration is checked once more and its line printed (a failure there is repeated in the launch's log with the
setting to change: a fixed budget trains no further). Where the flow is healthy the checks cost a comparison each.
Measured: ``benchmarks/results/stop46_measurements.md``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

REACH_SIGMAS = 5.0  # a final integral this many combined errors below the reference fails the check
REFERENCE_SHARE = 0.5  # the first half of the online batches make the reference
MIN_REFERENCE_BATCHES = 8  # fewer batches in the first half: no check (their spread would not measure the error)
FLAT_SHARE_ON_FAILURE = 0.1  # the flat share of each channel's points after a failed check (stop 45's share)
PRIOR_CHANNEL_WEIGHTS, FLAT_SHARE = "prior channel weights", "flat share"  # the remedies, in this order


@dataclass(frozen=True)
class ReachCheck:
    """The final ``integral`` +- ``error`` against the mean of the first ``batches`` online batches of training;
    ``step``: the training steps of the sampler checked, where it is not the final integration's; ``remedy``: what
    was done, or is to be done, where it failed."""

    reference: float
    reference_error: float
    batches: int
    integral: float
    error: float
    step: int | None = None
    remedy: str = ""

    @classmethod
    def of(
        cls, batch_integrals: list[float], integral: float, error: float, step: int | None = None
    ) -> ReachCheck | None:
        """The check of ``integral`` +- ``error`` against training's online batch integrals in the order drawn;
        None with fewer than :data:`MIN_REFERENCE_BATCHES` finite ones in the first half."""
        first = batch_integrals[: int(REFERENCE_SHARE * len(batch_integrals))]
        first = [value for value in first if math.isfinite(value)]
        if len(first) < MIN_REFERENCE_BATCHES:
            return None
        reference_error = statistics.stdev(first) / math.sqrt(len(first))
        return cls(statistics.fmean(first), reference_error, len(first), integral, error, step)

    @property
    def pull(self) -> float:
        """(final - reference) in combined errors."""
        combined = math.hypot(self.reference_error, self.error)
        if combined == 0:
            return 0.0 if self.integral == self.reference else math.copysign(math.inf, self.integral - self.reference)
        return (self.integral - self.reference) / combined

    @property
    def failed(self) -> bool:
        """The final integral lies more than :data:`REACH_SIGMAS` combined errors below the reference."""
        return self.pull < -REACH_SIGMAS

    def describe(self) -> str:
        verdict = "agrees"
        if self.failed:
            verdict = (
                f"below by more than {REACH_SIGMAS:g} sigma, the sampler no longer draws a region that training drew"
            )
            verdict += f"; {self.remedy}" if self.remedy else ""
        after = f" after step {self.step}" if self.step is not None else ""
        reference = (
            f"{self.reference:.6g} +- {self.reference_error:.3g} pb from the first {self.batches} training batches"
        )
        return (
            f"reach check{after}: integral {self.integral:.6g} +- {self.error:.3g} pb against {reference} "
            f"({self.pull:+.1f} sigma): {verdict}"
        )
