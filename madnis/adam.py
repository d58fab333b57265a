"""Adam with the learning-rate schedule of :func:`madnis.training.lr_factor`, on torch's ``_foreach`` kernels.

Why not ``torch.optim.Adam``: constructing any ``torch.optim.Optimizer`` imports torch's compiler stack
(``torch._dynamo``: 1.1 s measured on the 2-core VM), which every training job of a MadNIS launch paid before its
first step, once per P-dir. The update is torch's Adam without weight decay or AMSGrad (``foreach`` path, same
operations in the same order), with a step count per parameter as torch keeps it (a parameter without a
gradient is not updated). ``state_dict`` has the layout of ``torch.optim.Adam`` and of ``LambdaLR``, so the
checkpoints written with torch's optimiser load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class Adam:
    """Adam over ``params``; the learning rate at schedule step k is ``lr * lr_factor(k)``."""

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
        self.base_lr, self.lr_factor, self.betas, self.eps = lr, lr_factor, betas, eps
        self.schedule_step = 0  # LambdaLR's last_epoch: advanced by every training step, also a skipped one
        self.counts = [0] * len(self.params)  # optimiser steps each parameter took (bias corrections)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    @property
    def lr(self) -> float:
        return self.base_lr * self.lr_factor(self.schedule_step)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params = [self.params[i] for i in live]
        grads = [p.grad for p in params]
        exp_avg = [self.exp_avg[i] for i in live]
        exp_avg_sq = [self.exp_avg_sq[i] for i in live]
        for i in live:
            self.counts[i] += 1
        beta1, beta2 = self.betas
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        lr = self.lr
        step_size = [-lr / (1 - beta1 ** self.counts[i]) for i in live]
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, [math.sqrt(1 - beta2 ** self.counts[i]) for i in live])
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, step_size)

    def advance_schedule(self) -> None:
        """The learning-rate schedule's step (LambdaLR.step)."""
        self.schedule_step += 1

    def state_dict(self) -> dict[str, Any]:
        """The moments and step counts in ``torch.optim.Adam.state_dict()``'s layout."""
        state = {
            i: {"step": torch.tensor(float(c)), "exp_avg": self.exp_avg[i], "exp_avg_sq": self.exp_avg_sq[i]}
            for i, c in enumerate(self.counts)
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
            self.counts[i] = int(float(entry["step"]))
            self.exp_avg[i] = entry["exp_avg"].to(self.params[i]).clone()
            self.exp_avg_sq[i] = entry["exp_avg_sq"].to(self.params[i]).clone()
        self.schedule_step = int(schedule["last_epoch"])
