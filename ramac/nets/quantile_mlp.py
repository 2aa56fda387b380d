"""CODAC's quantile critic (its ``QuantileMlp``), as an ensemble of critics in one module.

Facts from distributional/networks.py and distributional/codac.py of JasonMa2016/CODAC @
991866b (read, not copied; the CODAC agent builds each critic with ``hidden_sizes =
[hidden_size, hidden_size]``, hidden_size 256, embedding_size 64). Per critic:

    h    = ReLU(LayerNorm(Linear(cat[s, a] -> hidden)))                    the base
    psi  = Sigmoid(LayerNorm(Linear(cos(pi i tau), i = 1..n_cos -> hidden)))  the level embedding
    Z    = Linear(ReLU(LayerNorm(Linear(h * psi -> head_hidden))) -> 1)     merge and output

So, unlike the IQN critic of ``ramac.nets.iqn``: one layer on the concatenated (s, a) (no
separate state and action branches), LayerNorm after every hidden layer, a sigmoid level
embedding of the base's width that gates the features multiplicatively, cosine
frequencies from 1 (not 0), and every layer at ``nn.Linear``'s default initialisation (no
small head). Why it matters: with CODAC's weakest penalty (HalfCheetah-ME, weight 0.1, no
Lagrange) a critic without LayerNorm is the likelier to blow up (docs/fidelity.md, "CODAC's
critic").

Every critic of the ensemble is held in the same tensors (a leading ensemble dimension),
as ``IQNEnsemble``, so E critics cost one batched matmul per layer and the module works
under ``torch.func.vmap`` over seeds (``ramac.seed_parallel``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.nets.iqn import EnsembleLinear, activation_fn, cosine_embedding


class EnsembleLayerNorm(nn.Module):
    """``nn.LayerNorm(features)`` for each of E members: x [E, ..., features], each member
    with its own affine weight (init 1) and bias (init 0), stored as [E, 1, features]."""

    def __init__(self, n_members: int, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.n_members, self.features, self.eps = n_members, features, eps
        self.weight = nn.Parameter(torch.ones(n_members, 1, features))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, features))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise the last dimension, then each member's affine map."""
        shape = (self.n_members,) + (1,) * (x.dim() - 2) + (self.features,)
        y = F.layer_norm(x, (self.features,), eps=self.eps)
        return y * self.weight.reshape(shape) + self.bias.reshape(shape)

    def extra_repr(self) -> str:
        """Sizes shown by print(module)."""
        return f"n_members={self.n_members}, features={self.features}, eps={self.eps}"


class QuantileMlpEnsemble(nn.Module):
    """An ensemble of CODAC quantile critics Z_e(s, a; tau) (see the module docstring).

    ``critic(obs [B, ds], actions [B, da], taus [B, N] or shared [N]) -> [E, B, N]``, the
    interface of ``IQNEnsemble``. ``activation`` replaces the ReLUs (the authors': relu;
    ``ramac.nets.iqn.ACTIVATIONS``); the level embedding's sigmoid is fixed.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_critics: int = 2,
        hidden: int = 256,
        n_cos: int = 64,
        head_hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.act = activation_fn(activation)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.n_critics, self.n_cos = n_critics, n_cos
        e = n_critics
        self.base_layer = EnsembleLinear(e, obs_dim + act_dim, hidden, shared_input=True)
        self.base_norm = EnsembleLayerNorm(e, hidden)
        self.tau_layer = EnsembleLinear(e, n_cos, hidden, shared_input=True)
        self.tau_norm = EnsembleLayerNorm(e, hidden)
        self.merge_layer = EnsembleLinear(e, hidden, head_hidden)
        self.merge_norm = EnsembleLayerNorm(e, head_hidden)
        self.head_out = EnsembleLinear(e, head_hidden, 1)

    def features(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The base h(s, a): obs [B, ds], actions [B, da] -> [E, B, hidden]."""
        x = torch.cat([obs, actions], dim=-1)
        return self.act(self.base_norm(self.base_layer(x)))

    def quantiles(self, features: Tensor, taus: Tensor) -> Tensor:
        """Quantile values from the base [E, B, hidden] at taus [B, N] or shared [N]: [E, B, N]."""
        if taus.dim() not in (1, 2):
            raise ValueError(f"taus must be [B, N] or [N], got shape {tuple(taus.shape)}")
        cos = cosine_embedding(taus, self.n_cos, first=1)
        psi = torch.sigmoid(self.tau_norm(self.tau_layer(cos)))  # [E, (B,) N, hidden]
        if taus.dim() == 1:
            psi = psi.unsqueeze(1)  # [E, 1, N, hidden]
        h = self.act(self.merge_norm(self.merge_layer(features.unsqueeze(2) * psi)))
        return self.head_out(h).squeeze(-1)

    def forward(self, obs: Tensor, actions: Tensor, taus: Tensor) -> Tensor:
        """Quantile values Z_e(s_b, a_b; tau_bn): [E, B, N] for taus [B, N] or shared [N]."""
        return self.quantiles(self.features(obs, actions), taus)
