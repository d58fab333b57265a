"""The :class:`MadNIS` facade: train, integrate and sample one multi-channel integrand (re-exported as
``madnis.MadNIS``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import AUTO, TrainingConfig
from .integrand import Integrand
from .integration import IntegrationResult, integrate
from .reach import FLAT_SHARE, FLAT_SHARE_ON_FAILURE, PRIOR_CHANNEL_WEIGHTS, ReachCheck
from .sampler import CountingIntegrand, Draw, MultiChannelSampler, WeightedSample, channel_probabilities
from .stopping import MIN_CHECK_POINTS, EfficiencyCheck, StoppingRule
from .stratification import ChannelStatistics, allocate_points
from .training import History, Trainer, TrainingProgress, pretrain_vegas


class MadNIS:
    """Train, integrate and sample one multi-channel integrand."""

    def __init__(self, integrand: Integrand, config: TrainingConfig | None = None):
        self.config = config or TrainingConfig()
        self.integrand = CountingIntegrand(integrand, self.config.max_failed_fraction)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            sampler = MultiChannelSampler(integrand, self.config)
        self.sampler = sampler.to(device=self.config.device, dtype=self.config.torch_dtype)
        self.statistics = ChannelStatistics(integrand.n_channels, self.config.stats_decay)
        self.generator = torch.Generator(device=self.config.device).manual_seed(self.config.seed)
        self.trainer = Trainer(self.sampler, self.integrand, self.config, self.statistics, self.generator)
        self.vegas_grids: torch.Tensor | None = None
        self.last_result: IntegrationResult | None = None
        # the points of the last training's efficiency checks, each with the steps its sampler had made
        self.check_samples: list[tuple[int, WeightedSample]] = []
        self.kept_step: int | None = None  # the steps of the sampler in use, where training ended with an earlier one
        self._checked_state: dict[str, torch.Tensor] | None = None  # the sampler at the last check that resumed

    @property
    def n_calls(self) -> int:
        """Integrand points evaluated so far (training, integration, sampling)."""
        return self.integrand.n_calls

    def train(
        self,
        callback: Callable[[TrainingProgress], None] | None = None,
        n_events: float | Callable[[float], float] | None = None,
        relative_error: Callable[[float], float] | None = None,
    ) -> History:
        """Run ``config.steps`` training steps (after VEGAS pre-training if configured).

        With ``config.steps = "auto"``, train while the projected time to ``n_events`` unweighted events falls
        (a number, or a function of the running integral) and, with ``relative_error`` (a function of the
        events: the integral's target relative error), to the points that error needs where they are more; the
        clock starts before VEGAS pre-training.
        """
        stopping = None
        if self.config.steps == AUTO:
            if n_events is None:
                raise ValueError('steps = "auto" needs n_events: the unweighted events to project the time to')
            stopping = StoppingRule.from_config(self.config, n_events, relative_error=relative_error)
        self.check_samples, self.kept_step, self._checked_state = [], None, None
        if self.config.vegas_pretraining and self.vegas_grids is None:
            self.vegas_grids = pretrain_vegas(self.sampler, self.integrand, self.config, self.generator)
        history = self.trainer.train(callback, stopping)
        while stopping is not None and self._resume_after_check(stopping, history):
            history.extend(self.trainer.train(callback, stopping))
        return history

    def _resume_after_check(self, stopping: StoppingRule, history: History) -> bool:
        """Measure on fresh points the efficiency that the best projection, on which the rule stopped, claimed
        (:mod:`madnis.stopping`); if it is far lower, and the training since any earlier check raised the measured
        efficiency (:class:`~madnis.stopping.EfficiencyCheck`), recalibrate the rule and say that training goes on.
        A check that ends training measuring less than the last check (which resumed it) puts the sampler back as it
        was at that check (:attr:`sampler_step` then labels its points): both measurements are of fresh samples of
        the generation's size, so the generation draws from the sampler that unweighted better (``g g > w+ d u~ g``:
        a channel part measured 0.88 % at step 179 and 0.30 % at step 393, whose generation chunks then needed ~1.7x
        the points per event of the other part's).

        The check's points stay in ``check_samples`` (see :meth:`take_check_samples`), so the final integration
        need not draw them again: those of the check that ends training are points of the final sampler; those of
        a check that resumed it are a sample of the sampler as it was then: each point's weight estimates its
        channel's I_i = integral of alpha_i f with the channel weights and density that drew it, and these I_i sum to
        I, so the sample pools with the others as a whole (:class:`~madnis.integration.SamplerPools`; learned channel
        weights change while training resumes: pooled per channel with another sampler's points, two channels, f = 1,
        alpha (0.9, 0.1) with most points in channel 0, then (0.1, 0.9) with most in channel 1, give 1.78 for 1), and
        hit-or-miss accepts its points in proportion to the integrand (q_s x f / q_s) against that sample's own w_max:
        the points of a resumed check are not lost (``g g > w+ d u~ g``: 100k of them, ~6 s), and its sampler's
        heavier tail does not lower the later sampler's efficiency."""
        if history.stop is None or history.stop.max_minutes_reached or stopping.best is None:
            return False
        if self.config.auto_check_points == 0:
            return False
        seed = self.config.seed + 1_000_003 * (len(history.checks) + 1)
        estimate = stopping.best.efficiency
        ready = stopping.ready_events(self.trainer.kept_points, estimate)
        needed = replace(stopping.best, ready_events=ready).points_to_draw  # the generation's sample, less those
        points = self.config.auto_check_points  # rounded, not cut: ready events make needed a float
        if math.isfinite(needed):
            points = int(min(points, max(MIN_CHECK_POINTS, round(needed))))
        result, sample = self.integrate_sample(points, seed=seed)
        if self._remedy_after_reach(stopping, history, result):
            return True
        measured = result.unweighting_efficiency
        previous = history.checks[-1].measured if history.checks else None
        out_of_time = stopping.elapsed() >= stopping.max_seconds
        check = EfficiencyCheck(self.trainer.steps_done, points, estimate, measured, previous, out_of_time)
        if check.fell and self._checked_state is not None:
            check = replace(check, kept_step=history.checks[-1].step)
        history.checks.append(check)
        self.check_samples.append((check.step, sample))
        if check.resumed:
            stopping.recalibrate(check.scale, measured, points)
            self._checked_state = copy.deepcopy(self.sampler.state_dict())
        elif check.kept_step is not None:
            self.sampler.load_state_dict(self._checked_state)
            self.kept_step = check.kept_step
        return check.resumed

    def _remedy_after_reach(self, stopping: StoppingRule, history: History, result: IntegrationResult) -> bool:
        """Where the check's fresh points of the sampler just made integrate far below training's first batches
        (:mod:`madnis.reach`): take the next remedy (MadEvent's channel weights where they were learned, else the
        flat share), drop the points drawn so far (the checks' and the kept training batches: their sampler left the
        region), start the stopping rule's projections afresh (they rest on those points) and say that training goes
        on. False where the check agrees or no remedy is left."""
        reach = self.reach_check(result, self.trainer.steps_done)
        remedy = self.next_reach_remedy
        if reach is None or not reach.failed or remedy is None:
            return False
        if remedy == PRIOR_CHANNEL_WEIGHTS:
            self.use_prior_channel_weights()
            change = "MadEvent's channel weights (alpha^MG) from here on"
        else:
            self.open_flat_share(FLAT_SHARE_ON_FAILURE)
            change = f"{FLAT_SHARE_ON_FAILURE:g} of each channel's points flat from here on"
        history.reach.append(replace(reach, remedy=f"training goes on with {change}, the points so far dropped"))
        self.check_samples.clear()
        self.trainer.kept.clear()
        self._checked_state = None
        stopping.restart()
        return True

    @property
    def next_reach_remedy(self) -> str | None:
        """What a failed reach check changes next (:mod:`madnis.reach`): :data:`~madnis.reach.PRIOR_CHANNEL_WEIGHTS`
        where the channel weights are learned, else :data:`~madnis.reach.FLAT_SHARE` below
        :data:`~madnis.reach.FLAT_SHARE_ON_FAILURE`, else None (no remedy left)."""
        if self.sampler.train_channel_weights:
            return PRIOR_CHANNEL_WEIGHTS
        if self.sampler.defensive_fraction < FLAT_SHARE_ON_FAILURE:
            return FLAT_SHARE
        return None

    def use_prior_channel_weights(self) -> None:
        """Weight the channels by MadEvent's alpha^MG from now on instead of the learned net (:mod:`madnis.reach`:
        learned weights can move a region's weight to a channel whose flow does not draw it), kept in the
        configuration so a saved sampler weights its channels the same way."""
        self._keep_in_config(train_channel_weights=False)
        self.sampler.train_channel_weights = False

    def _keep_in_config(self, **changes: object) -> None:
        """Change the configuration (the trainer's too) so that a saved sampler is rebuilt with the change."""
        self.config = replace(self.config, **changes)
        self.trainer.config = self.config

    @property
    def sampler_step(self) -> int:
        """The training steps the sampler in use had made: what labels its points (:meth:`take_check_samples`)."""
        return self.trainer.steps_done if self.kept_step is None else self.kept_step

    def take_check_samples(self) -> list[tuple[int, WeightedSample]]:
        """The weighted points of the last training's efficiency checks (channels allocated as :meth:`integrate`
        allocates them, see :meth:`_resume_after_check`), once, each with the training steps its sampler had made
        (the final sampler's are :attr:`sampler_step`). Their integrand calls are already counted in ``n_calls``."""
        samples, self.check_samples = self.check_samples, []
        return samples

    def take_training_batches(self) -> list[WeightedSample]:
        """The latest quarter of the last training's online batches (each point's ``channel_probability`` its batch's
        p_i), once (see :mod:`madnis.training`). Their integrand calls are already counted in ``n_calls``."""
        return self.trainer.kept_batches()

    def reach_check(self, result: IntegrationResult, step: int | None = None) -> ReachCheck | None:
        """``result`` (of the sampler after ``step`` training steps, where it is not the final one) against the first
        half of training's online batches (:mod:`madnis.reach`); None without enough of them (a re-used sampler, a
        short training)."""
        return ReachCheck.of(self.trainer.batch_integrals, result.integral, result.error, step)

    def open_flat_share(self, fraction: float) -> None:
        """Draw ``fraction`` of each channel's points flat from now on (the defensive mixture, :mod:`madnis.sampler`),
        kept in the configuration so a saved sampler draws the same way; a larger share already in use stays."""
        if fraction > self.sampler.defensive_fraction:
            self._keep_in_config(defensive_fraction=fraction)
            self.sampler.defensive_fraction = fraction

    def _generator(self, seed: int | None) -> torch.Generator:
        if seed is None:
            return self.generator
        return torch.Generator(device=self.config.device).manual_seed(seed)

    def integrate(
        self, n_points: int, callback: Callable[[IntegrationResult], None] | None = None, seed: int | None = None
    ) -> IntegrationResult:
        """I ± dI from ``n_points`` points allocated over the active channels ∝ running sigma_i."""
        return self._integrate(n_points, callback, seed, keep=None)

    def integrate_sample(self, n_points: int, seed: int | None = None) -> tuple[IntegrationResult, WeightedSample]:
        """:meth:`integrate`, and its points as a weighted sample in random order.

        Channel i got N_i of the N points, so p_i = N_i / N: as MadEvent's refine points, the integration's
        points serve the integral and then the unweighting (the stratified sample's accepted events follow f).
        """
        draws: list[Draw] = []
        result = self._integrate(n_points, None, seed, keep=draws.append)
        p = torch.tensor([c.n_points for c in result.channels], dtype=torch.float64) / result.n_points
        sample = WeightedSample.from_draws(draws, p)
        generator = self._generator(None if seed is None else seed + 1)
        return result, sample.take(torch.randperm(result.n_points, generator=generator, device=generator.device))

    def _integrate(
        self,
        n_points: int,
        callback: Callable[[IntegrationResult], None] | None,
        seed: int | None,
        keep: Callable[[Draw], None] | None,
    ) -> IntegrationResult:
        counts = allocate_points(
            n_points, self.statistics.sigma, self.sampler.active.cpu(), self.config.uniform_fraction, min_points=2
        )
        generator = self._generator(seed)

        def weight_fn(channel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            draw = self.sampler.draw(self.integrand, channel, generator)
            if keep is not None:
                keep(draw)
            return draw.weight, draw.ok

        group = self.sampler.group_of_channel.cpu()
        self.last_result = integrate(
            weight_fn, counts, group, self.config.integration_batch_size, callback, self.config.max_overweight
        )
        return self.last_result

    def sample_weighted(self, n: int, seed: int | None = None, share: torch.Tensor | None = None) -> WeightedSample:
        """``n`` weighted points, channel i drawn with p_i ∝ ``share[i]``; by default ∝ its w_max of the last
        integration, which maximises the unweighting efficiency (:mod:`madnis.unweighting`), or ∝ I_i
        (training estimates) before any."""
        generator = self._generator(seed)
        if share is None:
            share = self.statistics.integral
            if self.last_result is not None:
                integral, max_weights = self.last_result.channel_tensors()
                share = max_weights if bool((max_weights > 0).any()) else integral
        p = channel_probabilities(share.cpu(), self.sampler.active.cpu()).to(self.config.device)
        draws = []
        for start in range(0, n, self.config.integration_batch_size):
            size = min(self.config.integration_batch_size, n - start)
            channel = torch.multinomial(p, size, replacement=True, generator=generator)
            draws.append(self.sampler.draw(self.integrand, channel, generator))
        return WeightedSample.from_draws(draws, p)

    def save(self, path: str | Path) -> None:
        """Write the trained state (see :mod:`madnis.checkpoint`)."""
        save_checkpoint(
            path,
            {
                "config": self.config.to_dict(),
                "ndim": self.integrand.integrand.ndim,
                "n_channels": self.integrand.integrand.n_channels,
                "sampler": {k: v.cpu() for k, v in self.sampler.state_dict().items()},
                "statistics": {k: v.cpu() for k, v in self.statistics.state_dict().items()},
                "vegas_grids": None if self.vegas_grids is None else self.vegas_grids.cpu(),
                "trainer": self.trainer.state_dict(),
                "generator": self.generator.get_state(),
                "n_calls": self.n_calls,
                "n_inside": self.integrand.n_inside,
            },
        )

    @classmethod
    def load(cls, path: str | Path, integrand: Integrand, device: str | None = None) -> MadNIS:
        """Rebuild from :meth:`save`'s file for the same integrand (``device`` overrides the saved one)."""
        state = load_checkpoint(path)
        if (state["ndim"], state["n_channels"]) != (integrand.ndim, integrand.n_channels):
            raise ValueError(
                f"{path}: checkpoint is for ndim={state['ndim']}, n_channels={state['n_channels']}, "
                f"the integrand has ndim={integrand.ndim}, n_channels={integrand.n_channels}"
            )
        config = TrainingConfig.from_dict({**state["config"], **({"device": device} if device else {})})
        m = cls(integrand, config)
        m.sampler.load_state_dict(state["sampler"])
        m.statistics.load_state_dict(state["statistics"])
        m.vegas_grids = state["vegas_grids"]
        m.trainer.load_state_dict(state["trainer"])
        m.generator.set_state(state["generator"])
        m.integrand.n_calls = state["n_calls"]
        m.integrand.n_inside = state.get("n_inside", 0)  # not in checkpoints written before it was counted
        return m
