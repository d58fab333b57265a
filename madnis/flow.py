"""Conditional normalizing flow on the unit cube: RQ-spline coupling blocks (arXiv:2212.06172).

The latent space is uniform on [0,1]^D, so ``log q(r) = -log|det dr/dz|``. Each coupling block
transforms the dimensions of its mask with an RQ spline whose parameters come from a small MLP
(the *conditioner*) fed with the untouched dimensions and the condition (channel group):

- shared networks (``per_condition=False``): the condition enters as a one-hot vector, connected
  to the first hidden layer and directly to the output layer (a per-condition output bias, which
  lets a VEGAS grid per condition be loaded exactly, see :mod:`madnis.vegas_init`);
- ``per_condition=True``: independent weights per condition (one flow per channel group),
  evaluated together as padded batched matmuls, not a Python loop over conditions.

The last layer of every conditioner starts at zero, so the initial flow is the identity.
Inside, points are kept in a *layout* where the current block's conditioning dimensions come
first; the fixed permutations between blocks (and the soft rotations) are in ``self.mixers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .permutations import IndexPermutation, SoftRotation, default_blocks, masks_for
from .splines import (
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    MIN_DERIVATIVE,
    SplineConstants,
    SplineRecord,
    replay_inverse,
    rq_spline_recorded,
    rq_spline_unconstrained,
)

# Points per flow evaluation when sampling: large batches are drawn in chunks this size, whose
# intermediates (~1.6 MB each in 10D) stay in the cache (measured ~25 % less CPU time per point at
# batch 100k, one thread), while the per-call overhead (~5 ms in 10D) stays small per point.
SAMPLE_CHUNK = 4096


@dataclass
class _Grouping:
    """Where each point sits in the padded (conditions, max_count, features) layout."""

    slot: torch.Tensor
    n_conditions: int
    max_count: int

    @staticmethod
    def of(condition: torch.Tensor, n_conditions: int) -> _Grouping:
        order = torch.argsort(condition, stable=True)
        counts = torch.bincount(condition, minlength=n_conditions)
        starts = torch.cumsum(counts, 0) - counts
        sorted_condition = condition[order]
        position = torch.arange(condition.numel(), device=condition.device) - starts[sorted_condition]
        max_count = int(counts.max()) if condition.numel() else 0
        slot = torch.empty_like(condition)
        slot[order] = sorted_condition * max_count + position
        return _Grouping(slot, n_conditions, max_count)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        padded = x.new_zeros(self.n_conditions * self.max_count, x.shape[1])
        return padded.index_copy(0, self.slot, x).view(self.n_conditions, self.max_count, -1)

    def unpack(self, padded: torch.Tensor) -> torch.Tensor:
        return padded.reshape(-1, padded.shape[-1])[self.slot]


class Conditioner(nn.Module):
    """MLP ``(x_cond, condition) -> spline parameters`` with ReLU hidden layers.

    Weights have a leading axis of size ``n_conditions`` (per-condition networks) or 1 (shared).
    The first-layer and output biases are per condition in both modes: for the shared network that
    is exactly a one-hot condition input connected to the first and the last layer.
    """

    def __init__(
        self,
        features_in: int,
        features_out: int,
        n_conditions: int,
        hidden_layers: int,
        hidden_units: int,
        per_condition: bool,
    ):
        super().__init__()
        self.per_condition = per_condition
        self.n_conditions = n_conditions
        n_weights = n_conditions if per_condition else 1
        sizes = [features_in] + [hidden_units] * hidden_layers + [features_out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            weight = torch.empty(n_weights, n_in, n_out)
            bound = 1 / math.sqrt(max(n_in, 1))
            nn.init.uniform_(weight, -bound, bound)
            per_condition_bias = per_condition or layer in (0, len(sizes) - 2)
            bias = torch.empty(n_conditions if per_condition_bias else 1, n_out)
            nn.init.uniform_(bias, -bound, bound)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))
        self.set_constant_output(torch.zeros(n_conditions, features_out))

    def set_constant_output(self, output: torch.Tensor) -> None:
        """Zero the last layer's weights and set its bias: output (n_conditions, features_out)."""
        with torch.no_grad():
            self.weights[-1].zero_()
            self.biases[-1].copy_(output.expand_as(self.biases[-1]))

    def layers(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(weight, bias) of each layer (read from the lists' dicts: ParameterList indexing costs ~25 us a call)."""
        return list(zip(self.weights._parameters.values(), self.biases._parameters.values()))

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None, grouping: _Grouping | None) -> torch.Tensor:
        layers = self.layers()
        last = len(layers) - 1
        if self.per_condition and self.n_conditions > 1:
            h = grouping.pack(x)
            for layer, (weight, bias) in enumerate(layers):
                h = (
                    torch.baddbmm(bias[:, None, :], h, weight)
                    if weight.shape[1]
                    else bias[:, None, :].expand(-1, h.shape[1], -1)
                )
                if layer < last:
                    h = torch.relu(h)
            return grouping.unpack(h)
        h = x
        for layer, (weight, bias) in enumerate(layers):
            if bias.shape[0] > 1:
                bias = bias.index_select(0, condition)
            h = torch.addmm(bias, h, weight.squeeze(0)) if weight.shape[1] else bias.expand(x.shape[0], -1)
            if layer < last:
                h = torch.relu(h)
        return h


class CouplingBlock(nn.Module):
    """Transforms the last ``dims - n_cond`` entries of its layout with an RQ spline."""

    def __init__(
        self,
        dims: int,
        n_cond: int,
        n_conditions: int,
        bins: int,
        hidden_layers: int,
        hidden_units: int,
        per_condition: bool,
        constants: SplineConstants,
    ):
        super().__init__()
        self.n_cond = n_cond
        self.n_transformed = dims - n_cond
        self.bins = bins
        self.constants = constants
        self.conditioner = Conditioner(
            n_cond, self.n_transformed * (3 * bins + 1), n_conditions, hidden_layers, hidden_units, per_condition
        )

    def forward(
        self,
        x: torch.Tensor,
        condition,
        grouping,
        inverse: bool = False,
        record: list[SplineRecord] | None = None,
        replay: SplineRecord | None = None,
    ):
        """The block's map (or its inverse) and log|det|. ``record``: a no-gradient pass appends its spline there;
        ``replay``: an inverse pass at the points of that record reuses it (:func:`madnis.splines.replay_inverse`)."""
        x_cond, x_trans = x.split((self.n_cond, self.n_transformed), dim=1)  # one cat in the backward
        params = self.conditioner(x_cond, condition, grouping).view(x.shape[0], self.n_transformed, -1)
        if replay is not None:
            if not inverse:
                raise ValueError("a recorded spline is replayed only by the inverse pass")
            y, log_det = replay_inverse(x_trans, params, replay)
        elif record is not None:
            spline = rq_spline_recorded(x_trans, params, inverse, self.constants)
            record.append(spline)
            y, log_det = spline.out, spline.log_det
        else:
            y, log_det = rq_spline_unconstrained(x_trans, params, inverse, self.constants)
        return torch.cat((x_cond, y), dim=1), log_det.sum(dim=1)


class Mixer(nn.Module):
    """What sits between two blocks: a fixed reordering and, for ``soft``, a trainable rotation."""

    def __init__(self, perm: torch.Tensor, rotation: SoftRotation | None):
        super().__init__()
        identity = torch.equal(perm, torch.arange(perm.numel()))
        self.permutation = None if identity else IndexPermutation(perm)
        self.rotation = rotation

    def forward(self, x, condition) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mixed x and the log-det (None when it is zero: permutations only)."""
        log_det = None
        if self.permutation is not None:
            x = x.index_select(1, self.permutation.perm)
        if self.rotation is not None:
            x, log_det = self.rotation(x, condition)
        return x, log_det

    def inverse(self, x, condition) -> tuple[torch.Tensor, torch.Tensor | None]:
        log_det = None
        if self.rotation is not None:
            x, log_det = self.rotation.inverse(x, condition)
        if self.permutation is not None:
            x = x.index_select(1, self.permutation.inverse_perm)
        return x, log_det


class Flow(nn.Module):
    """Normalizing flow on the unit cube [0,1]^dims, conditional on an integer condition (the channel group)."""

    def __init__(
        self,
        dims: int,
        n_conditions: int = 1,
        *,
        bins: int = 10,
        blocks: int | None = None,
        permutations: str = "log",
        hidden_layers: int = 3,
        hidden_units: int = 32,
        per_condition: bool = False,
        min_bin_width: float = MIN_BIN_WIDTH,
        min_bin_height: float = MIN_BIN_HEIGHT,
        min_derivative: float = MIN_DERIVATIVE,
    ):
        super().__init__()
        if dims < 1 or n_conditions < 1 or bins < 2:
            raise ValueError(f"Flow needs dims >= 1, n_conditions >= 1, bins >= 2 (got {dims}, {n_conditions}, {bins})")
        self.dims = dims
        self.n_conditions = n_conditions
        self.bins = bins
        self.per_condition = per_condition
        self.permutation_kind = permutations
        self.constants = SplineConstants(min_bin_width, min_bin_height, min_derivative)
        masks = masks_for(permutations, dims, blocks or default_blocks(dims))
        # layout of block b: the original dimension at each position (conditioning dims first)
        self.layouts = [torch.cat((torch.nonzero(~m)[:, 0], torch.nonzero(m)[:, 0])) for m in masks]
        self.blocks = nn.ModuleList(
            CouplingBlock(
                dims, int((~m).sum()), n_conditions, bins, hidden_layers, hidden_units, per_condition, self.constants
            )
            for m in masks
        )
        soft = permutations == "soft" and dims > 1
        mixers = [Mixer(self.layouts[0], None)]
        for previous, layout in zip(self.layouts[:-1], self.layouts[1:]):
            rotation = SoftRotation(dims, n_conditions if per_condition else 1) if soft else None
            mixers.append(Mixer(torch.argsort(previous)[layout], rotation))
        mixers.append(Mixer(torch.argsort(self.layouts[-1]), None))
        self.mixers = nn.ModuleList(mixers)

    def _prepare(self, x: torch.Tensor, condition: torch.Tensor | None):
        if condition is None:
            if self.n_conditions > 1:
                raise ValueError("Flow with several conditions needs a condition for every point")
            condition = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        grouping = _Grouping.of(condition, self.n_conditions) if self.per_condition and self.n_conditions > 1 else None
        return condition, grouping

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(x.dtype).eps
        return x.clamp(eps, 1 - eps)

    def forward(
        self, z: torch.Tensor, condition: torch.Tensor | None = None, record: list[SplineRecord] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent z -> r and log|det dr/dz|. ``record`` (a no-gradient pass): filled with each block's spline, in
        block order, for :meth:`log_prob` at the same points (its ``replay``)."""
        condition, grouping = self._prepare(z, condition)
        x, log_det = z, 0
        for mixer, block in zip(self.mixers, self.blocks):
            x, ld_mix = mixer(x, condition)
            x, ld_block = block(x, condition, grouping, record=record)
            log_det = log_det + ld_block if ld_mix is None else log_det + ld_mix + ld_block
        x, _ = self.mixers[-1](x, condition)
        return self._clamp(x), log_det

    def inverse(
        self,
        r: torch.Tensor,
        condition: torch.Tensor | None = None,
        record: list[SplineRecord] | None = None,
        replay: list[SplineRecord] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """r -> latent z and log|det dz/dr|. ``record``: as in :meth:`forward`; ``replay``: the record of a pass
        (either way) over exactly these points with the current parameters, whose splines this pass reuses."""
        condition, grouping = self._prepare(r, condition)
        x, _ = self.mixers[-1].inverse(r, condition)
        log_det = 0
        recorded: list[SplineRecord] = []
        for index in reversed(range(len(self.blocks))):
            mixer, block = self.mixers[index], self.blocks[index]
            spline = None if replay is None else replay[index]
            x, ld_block = block(
                x, condition, grouping, inverse=True, record=None if record is None else recorded, replay=spline
            )
            x, ld_mix = mixer.inverse(x, condition)
            log_det = log_det + ld_block if ld_mix is None else log_det + ld_mix + ld_block
        if record is not None:
            record.extend(reversed(recorded))
        return self._clamp(x), log_det

    def sample(
        self,
        condition: torch.Tensor,
        generator: torch.Generator | None = None,
        record: list[SplineRecord] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One point per entry of ``condition``: r ~ q(r | condition) and log q(r). ``record``: as in
        :meth:`forward` (the batch then goes through in one piece)."""
        reference = self.blocks[0].conditioner.biases[0]
        z = torch.rand(
            (condition.shape[0], self.dims), generator=generator, dtype=reference.dtype, device=reference.device
        )
        if z.shape[0] <= SAMPLE_CHUNK or record is not None:
            r, log_det = self.forward(z, condition, record)
        else:
            parts = [
                self.forward(z[i : i + SAMPLE_CHUNK], condition[i : i + SAMPLE_CHUNK])
                for i in range(0, len(z), SAMPLE_CHUNK)
            ]
            r, log_det = torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts])
        return r, -log_det

    def log_prob(
        self,
        r: torch.Tensor,
        condition: torch.Tensor | None = None,
        record: list[SplineRecord] | None = None,
        replay: list[SplineRecord] | None = None,
    ) -> torch.Tensor:
        """log q(r | condition); ``record`` and ``replay`` as in :meth:`inverse`."""
        return self.inverse(r, condition, record, replay)[1]

    def init_from_grids(self, grids: torch.Tensor) -> None:
        """Start from VEGAS grids (n_conditions, dims, n_grid_bins+1), see :mod:`madnis.vegas_init`."""
        from .vegas_init import init_flow_from_grids

        init_flow_from_grids(self, grids)
