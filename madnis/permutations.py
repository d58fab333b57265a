"""How a coupling flow mixes dimensions between its blocks (arXiv:2212.06172 sec. 3.4).

Each coupling block transforms a subset of the dimensions (a *mask*) conditioned on the rest.
Three ways to choose the masks and what sits between the blocks:

- ``exchange``: alternate between transforming the second and the first half of the dimensions;
- ``log`` (logarithmic decomposition): block ``2b`` transforms the dimensions whose index has
  binary digit ``b`` set, block ``2b+1`` the others. Every pair of dimensions differs in some
  digit, so each pair is separated (one conditions the other) in some block, with only
  ``2 ceil(log2 D)`` blocks;
- ``soft``: exchange masks with a trainable soft rotation between the blocks:
  ``sigmoid(R logit(x))`` with ``R`` a product of Givens rotations (generalised Euler angles),
  mapping the unit cube to itself with an exact, cheap log-Jacobian.

Masks are bool tensors (blocks, dims), True where the block transforms that dimension. Every
permutation object maps ``(x, condition) -> (x', log|det dx'/dx|)`` forward and inverse.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PERMUTATIONS


def default_blocks(dims: int) -> int:
    """2 ceil(log2 D) blocks, at least 2."""
    return max(2, 2 * math.ceil(math.log2(dims))) if dims > 1 else 2


def exchange_masks(dims: int, blocks: int) -> torch.Tensor:
    """Alternately transform the second half and the first half (all dims when dims == 1)."""
    if dims == 1:
        return torch.ones(blocks, 1, dtype=torch.bool)
    second_half = torch.arange(dims) >= dims // 2
    return torch.stack([second_half if b % 2 == 0 else ~second_half for b in range(blocks)])


def log_masks(dims: int, blocks: int | None = None) -> torch.Tensor:
    """Logarithmic decomposition: binary digit masks and their complements, cycled to ``blocks``."""
    if dims == 1:
        return torch.ones(blocks or 2, 1, dtype=torch.bool)
    digits = math.ceil(math.log2(dims))
    index = torch.arange(dims)
    base = []
    for b in range(digits):
        has_digit = (index >> b) & 1 == 1
        base += [has_digit, ~has_digit]
    blocks = blocks or len(base)
    return torch.stack([base[i % len(base)] for i in range(blocks)])


def masks_for(kind: str, dims: int, blocks: int) -> torch.Tensor:
    """The block masks of permutation kind ``kind``."""
    if kind == "log":
        return log_masks(dims, blocks)
    if kind in ("exchange", "soft"):
        return exchange_masks(dims, blocks)
    raise ValueError(f"unknown permutations '{kind}', expected one of {PERMUTATIONS}")


class IndexPermutation(nn.Module):
    """A fixed reordering of the dimensions (log-det 0): ``x' = x[:, perm]``."""

    def __init__(self, perm: torch.Tensor):
        super().__init__()
        self.register_buffer("perm", perm.clone())
        self.register_buffer("inverse_perm", torch.argsort(perm))

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return x.index_select(1, self.inverse_perm), x.new_zeros(x.shape[0])


def givens_product(angles: torch.Tensor, dims: int) -> torch.Tensor:
    """Rotation matrices (..., D, D) = product of Givens rotations G_ij(angle_ij) over all i < j.

    Built by a balanced tree of batched matrix products (log2 of D(D-1)/2 steps), not a loop.
    """
    i, j = torch.triu_indices(dims, dims, 1, device=angles.device)
    n = i.numel()
    eye = torch.eye(dims, dtype=angles.dtype, device=angles.device)
    g = eye.expand(*angles.shape[:-1], n, dims, dims).clone()
    cos, sin = torch.cos(angles), torch.sin(angles)
    pair = torch.arange(n, device=angles.device)
    g[..., pair, i, i] = cos
    g[..., pair, j, j] = cos
    g[..., pair, i, j] = -sin
    g[..., pair, j, i] = sin
    while g.shape[-3] > 1:
        if g.shape[-3] % 2:
            g = torch.cat((g, eye.expand(*g.shape[:-3], 1, dims, dims)), dim=-3)
        g = g[..., 0::2, :, :] @ g[..., 1::2, :, :]
    return g[..., 0, :, :]


def _log_sigmoid_derivative(t: torch.Tensor) -> torch.Tensor:
    """log(sigmoid'(t)) = log sigmoid(t) + log sigmoid(-t), stable for large |t|."""
    return F.logsigmoid(t) + F.logsigmoid(-t)


class SoftRotation(nn.Module):
    """Trainable soft permutation ``x -> sigmoid(R logit(x))`` on the unit cube (arXiv:2212.06172).

    ``R`` is a product of Givens rotations with trainable angles, one set per condition when
    ``n_conditions > 1`` (independent flows per condition), else shared. Angles start at zero, so
    the map starts as the identity (and a VEGAS initialisation passes through it unchanged).
    log|det| = sum log sigmoid'(y) - sum log(x (1 - x)) since |det R| = 1.
    """

    def __init__(self, dims: int, n_conditions: int = 1):
        super().__init__()
        self.dims = dims
        self.angles = nn.Parameter(torch.zeros(n_conditions, dims * (dims - 1) // 2))

    def reset(self) -> None:
        """Back to the identity."""
        with torch.no_grad():
            self.angles.zero_()

    def _rotate(self, t: torch.Tensor, condition: torch.Tensor | None, transpose: bool) -> torch.Tensor:
        rotation = givens_product(self.angles, self.dims)
        if transpose:
            rotation = rotation.transpose(-1, -2)
        if rotation.shape[0] == 1:
            return t @ rotation[0].T
        return torch.einsum("nij,nj->ni", rotation[condition], t)

    def _map(self, x: torch.Tensor, condition: torch.Tensor | None, transpose: bool):
        eps = torch.finfo(x.dtype).eps
        x = x.clamp(eps, 1 - eps)
        t = torch.logit(x)
        u = self._rotate(t, condition, transpose)
        y = torch.sigmoid(u).clamp(eps, 1 - eps)
        log_det = _log_sigmoid_derivative(u).sum(dim=1) - _log_sigmoid_derivative(t).sum(dim=1)
        return y, log_det

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(x, condition, transpose=False)

    def inverse(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._map(x, condition, transpose=True)
