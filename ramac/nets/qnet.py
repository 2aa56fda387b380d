"""Plain (risk-neutral) Q(s, a) critics: an ensemble of MLPs evaluated as one batched module.

Used by the risk-neutral baselines (Diffusion-QL, FQL, CVAE-QL), whose twin critics are
two independent MLPs; holding them in [E, in, out] weights costs one batched matmul per
layer instead of E separate calls. The ensemble layer is the IQN critic's
(:class:`~ramac.nets.iqn.EnsembleLinear`), not a second implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.nets.iqn import EnsembleLinear
from ramac.nets.mlp import Mish


class EnsembleLayerNorm(nn.Module):
    """Layer normalisation with a separate affine (gain, bias) per ensemble member."""

    def __init__(self, n_members: int, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.width, self.eps = width, eps
        self.weight = nn.Parameter(torch.ones(n_members, 1, width))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, width))

    def forward(self, x: Tensor) -> Tensor:
        """x: [E, B, width] -> [E, B, width]."""
        return F.layer_norm(x, (self.width,), eps=self.eps) * self.weight + self.bias


class QEnsemble(nn.Module):
    """E independent critics Q_e(s, a) = MLP_e(cat[s, a]), e = 0..n_members-1.

    Each member: n_layers x (Linear hidden [+ LayerNorm] + activation) -> Linear 1.
    Diffusion-QL's critic is 3 x 256 with Mish (docs/reference-code.md, "Diffusion-QL"); FQL's is
    4 x 512 with GELU and layer norm (Park et al. 2025).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_members: int = 2,
        hidden: int = 256,
        n_layers: int = 3,
        activation: type[nn.Module] = Mish,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.n_members = n_members
        layers: list[nn.Module] = []
        width = obs_dim + act_dim
        for i in range(n_layers):
            layers.append(EnsembleLinear(n_members, width, hidden, shared_input=i == 0))
            if layer_norm:
                layers.append(EnsembleLayerNorm(n_members, hidden))
            layers.append(activation())
            width = hidden
        layers.append(EnsembleLinear(n_members, width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Q values of every member: obs [B, ds], actions [B, da] -> [E, B]."""
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)
