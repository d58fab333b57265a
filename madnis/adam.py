"""Adam with the learning-rate schedule of :func:`madnis.training.lr_factor`, on one flat parameter buffer.

Why not ``torch.optim.Adam``: constructing any ``torch.optim.Optimizer`` imports torch's compiler stack
(``torch._dynamo``: 1.1 s measured on the 2-core VM), which every training job of a MadNIS launch paid before its
first step, once per P-dir. The update is torch's Adam without weight decay or AMSGrad (``foreach`` path, same
operations in the same order), with a step count per parameter as torch keeps it (a parameter without a
gradient is not updated). ``state_dict`` has the layout of ``torch.optim.Adam`` and of ``LambdaLR``, so the
checkpoints written with torch's optimiser load unchanged.

Why one flat buffer: every parameter's data becomes a view into one contiguous tensor (and the moments are two
more), so clipping and updating take a few operations on that tensor instead of a few per parameter. A 10D flow
with its channel-weight net has 70 parameter tensors: torch's ``foreach`` kernels loop over them on a CPU, ~2 ms of
a ~45 ms training step at batch 1024 (``benchmarks/results/step_time.md``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class Adam:
    """Adam over ``params``; the learning rate at schedule step k is ``lr * lr_factor(k)``. The parameters' data
    are moved into one flat buffer (each parameter a view into it: in-place copies into them, as
    ``load_state_dict`` makes, keep working); they must share dtype and device."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        lr_factor: Callable[[int], float],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        if len({(p.dtype, p.device) for p in self.params}) > 1:
            raise ValueError("Adam needs parameters of one dtype and device")
        self.base_lr, self.lr_factor, self.betas, self.eps = lr, lr_factor, betas, eps
        self.schedule_step = 0  # LambdaLR's last_epoch: advanced by every training step, also a skipped one
        self.counts = [0] * len(self.params)  # optimiser steps each parameter took (bias corrections)
        sizes = [p.numel() for p in self.params]
        self.bounds = [(end - size, end) for size, end in zip(sizes, itertools.accumulate(sizes))]
        self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        for p, (start, end) in zip(self.params, self.bounds):
            p.data = self.flat[start:end].view_as(p)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)

    @property
    def lr(self) -> float:
        return self.base_lr * self.lr_factor(self.schedule_step)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, max_norm: float = math.inf) -> float:
        """Clip the gradients to total norm ``max_norm`` (as ``torch.nn.utils.clip_grad_norm_``) and make one Adam
        update of every parameter that has a gradient. Returns the total norm before clipping; where it is not finite
        nothing is updated."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return 0.0
        grads = torch.cat([self.params[i].grad.reshape(-1) for i in live])
        norm = float(torch.linalg.vector_norm(grads))
        if not math.isfinite(norm):
            return norm
        clip = max_norm / (norm + 1e-6)  # clip_grad_norm_'s coefficient, applied where below 1
        if clip < 1.0:
            grads.mul_(clip)
        for i in live:
            self.counts[i] += 1
        offset = 0
        for first, last in self._runs(live):  # slices of the buffer whose parameters share a step count
            start, end = self.bounds[first][0], self.bounds[last][1]
            self._update(slice(start, end), grads[offset : offset + end - start], self.counts[first])
            offset += end - start
        return norm

    def _runs(self, live: list[int]) -> list[tuple[int, int]]:
        """Runs (first, last) of consecutive live parameters with one step count (one run when all are live)."""
        runs: list[tuple[int, int]] = []
        for i in live:
            if runs and runs[-1][1] == i - 1 and self.counts[i] == self.counts[runs[-1][0]]:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        return runs

    def _update(self, part: slice, grad: torch.Tensor, count: int) -> None:
        beta1, beta2 = self.betas
        exp_avg, exp_avg_sq = self.exp_avg[part], self.exp_avg_sq[part]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().div_(math.sqrt(1 - beta2**count)).add_(self.eps)
        self.flat[part].addcdiv_(exp_avg, denom, value=-self.lr / (1 - beta1**count))

    def advance_schedule(self) -> None:
        """The learning-rate schedule's step (LambdaLR.step)."""
        self.schedule_step += 1

    def state_dict(self) -> dict[str, Any]:
        """The moments and step counts in ``torch.optim.Adam.state_dict()``'s layout (copies, one per parameter)."""
        state = {
            i: {
                "step": torch.tensor(float(c)),
                "exp_avg": self.exp_avg[start:end].view_as(p).clone(),
                "exp_avg_sq": self.exp_avg_sq[start:end].view_as(p).clone(),
            }
            for i, (c, p, (start, end)) in enumerate(zip(self.counts, self.params, self.bounds))
            if c > 0
        }
        group = {"lr": self.lr, "initial_lr": self.base_lr, "betas": self.betas, "eps": self.eps}
        return {"state": state, "param_groups": [group | {"params": list(range(len(self.params)))}]}

    def schedule_state_dict(self) -> dict[str, Any]:
        """The schedule's position in ``LambdaLR.state_dict()``'s layout."""
        return {"last_epoch": self.schedule_step, "base_lrs": [self.base_lr], "_last_lr": [self.lr]}

    def load_state_dict(self, state: dict[str, Any], schedule: dict[str, Any]) -> None:
        """Moments, step counts and schedule position from :meth:`state_dict` / :meth:`schedule_state_dict`
        (or torch's Adam and LambdaLR)."""
        n = len(state["param_groups"][0]["params"])
        if n != len(self.params):
            raise ValueError(f"optimiser state for {n} parameters, the sampler has {len(self.params)}")
        for i, entry in state["state"].items():
            i = int(i)
            start, end = self.bounds[i]
            self.counts[i] = int(float(entry["step"]))
            self.exp_avg[start:end].copy_(entry["exp_avg"].reshape(-1))
            self.exp_avg_sq[start:end].copy_(entry["exp_avg_sq"].reshape(-1))
        self.schedule_step = int(schedule["last_epoch"])
