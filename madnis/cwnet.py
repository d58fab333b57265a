"""Channel-weight network: alpha(x) = softmax(log alpha_prior(x) + Delta(features(x))) (MadNIS sec. 2.3).

The network learns a correction Delta on top of the physics prior (MadGraph's single-diagram-enhanced
weights). Delta's last layer starts at exactly zero, so training starts from alpha == alpha_prior.
A prior entry of 0 enters as log(finfo.tiny), never log(0), so the softmax never produces NaN. Without
features Delta is a trainable per-channel constant; without a prior the start is flat, 1 / n_channels.
Restricting to the active channels (dropping) happens afterwards, in :mod:`madnis.dropping`.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelWeightNet(nn.Module):
    """alpha = softmax(log(alpha_prior + tiny) + Delta(features)) over all channels."""

    def __init__(self, n_channels: int, n_features: int = 0, hidden_layers: int = 2, hidden_units: int = 32):
        super().__init__()
        self.n_channels, self.n_features = n_channels, n_features
        if n_features > 0:
            layers: list[nn.Module] = []
            width = n_features
            for _ in range(hidden_layers):
                layers += [nn.Linear(width, hidden_units), nn.SiLU()]
                width = hidden_units
            last = nn.Linear(width, n_channels)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.delta: nn.Sequential | None = nn.Sequential(*layers, last)
        else:
            self.delta = None
        self.bias = None if n_features > 0 else nn.Parameter(torch.zeros(n_channels))

    def forward(
        self, alpha_prior: torch.Tensor | None, features: torch.Tensor | None, n: int | None = None
    ) -> torch.Tensor:
        """(n, n_channels) channel weights summing to 1; ``n`` is needed only without prior and features."""
        if alpha_prior is not None:
            tiny = torch.finfo(alpha_prior.dtype).tiny
            logits = torch.log(alpha_prior.clamp_min(0.0) + tiny)
        else:
            rows = features.shape[0] if features is not None else n
            if rows is None:
                raise ValueError("ChannelWeightNet needs alpha_prior, features or n")
            parameter = next(self.parameters())
            logits = torch.zeros(rows, self.n_channels, dtype=parameter.dtype, device=parameter.device)
        if self.delta is not None and features is not None:
            weight = self.delta[-1].weight
            logits = logits + self.delta(features.to(weight.dtype)).to(logits.dtype)
        elif self.bias is not None:
            logits = logits + self.bias.to(logits.dtype)
        return torch.softmax(logits, dim=1)
