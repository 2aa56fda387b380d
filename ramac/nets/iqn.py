"""Implicit quantile network (IQN) critics, evaluated as one batched ensemble, and their loss.

Z(s, a; tau) is the tau-quantile of the return. Every critic of the ensemble is held in the
same tensors (a leading ensemble dimension), so E critics cost one batched matmul per layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cosine_embedding(taus: Tensor, n_cos: int, first: int = 0) -> Tensor:
    """Cosine features of quantile levels: taus [..., N] -> [..., N, n_cos], cos(pi i tau).

    i = first..first+n_cos-1: from 0 in the IQN critics (docs/reference-code.md, "RADAC",
    "IQN critic"; Dabney et al. 2018, eq. 4), from 1 in CODAC's QuantileMlp
    (``ramac.nets.quantile_mlp``).
    """
    i = torch.arange(first, first + n_cos, device=taus.device, dtype=taus.dtype)
    return torch.cos(math.pi * i * taus.unsqueeze(-1))


LEAKY_SLOPE = 0.2

# ReLU as in the public critics (docs/reference-code.md, "RADAC", "IQN critic").
# LeakyReLU(0.2) keeps rare-penalty tails learnable: with ReLU, on a one-state bandit paying
# +4 or -8 w.p. 0.2, 7 of 12 critics (6 seeds) learned the 0.05-quantile as a constant near
# 0 at every action because the head units go dead at low levels and never recover; with
# LeakyReLU(0.2) all of them learned -8 within ~150 steps (tests/agents/test_agents_bandit.py).
ACTIVATIONS = {"relu": F.relu, "leaky_relu": lambda x: F.leaky_relu(x, LEAKY_SLOPE)}


def activation_fn(name: str):  # noqa: ANN201 - a tensor function
    """The hidden activation called ``name`` (:data:`ACTIVATIONS`); another name is a
    ValueError listing them."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got '{name}'")
    return ACTIVATIONS[name]


class EnsembleLinear(nn.Module):
    """E independent linear layers stored as weight [E, in, out] and bias [E, 1, out].

    With ``shared_input`` the input x [..., in] is the same for every member (states,
    actions, quantile levels) and the output is [E, ..., out]; otherwise x is [E, ..., in]
    (one slice per member). Each member is initialised like ``nn.Linear``.
    """

    def __init__(
        self, n_members: int, in_features: int, out_features: int, shared_input: bool = False
    ) -> None:
        super().__init__()
        self.n_members, self.in_features, self.out_features = n_members, in_features, out_features
        self.shared_input = shared_input
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)  # the bound nn.Linear's default init reduces to
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., in] (shared) or [E, ..., in] -> [E, ..., out]."""
        if self.shared_input:
            lead = x.shape[:-1]
            flat = x.reshape(-1, self.in_features)
            out = torch.einsum("mi,eio->emo", flat, self.weight) + self.bias
        else:
            lead = x.shape[1:-1]
            flat = x.reshape(self.n_members, -1, self.in_features)
            out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(self.n_members, *lead, self.out_features)

    def extra_repr(self) -> str:
        """Sizes shown by print(module)."""
        return (
            f"n_members={self.n_members}, in_features={self.in_features}, "
            f"out_features={self.out_features}, shared_input={self.shared_input}"
        )


class IQNEnsemble(nn.Module):
    """An ensemble of IQN critics Z_e(s, a; tau), e = 0..n_critics-1, as one module.

    Per critic (docs/reference-code.md, "RADAC", "IQN critic"): s -> Linear(hidden)+ReLU,
    a -> Linear(hidden)+ReLU, cat -> Linear(embed_dim)+ReLU = phi(s, a);
    tau -> cos(pi i tau), i < n_cos -> Linear(embed_dim)+ReLU = psi(tau);
    phi * psi -> Linear(head_hidden)+ReLU -> Linear(1). phi is computed once per (s, a) and
    broadcast over the quantile levels (the public code repeats s and a N times instead).

    Three differences from the public critic (utils/quantile_value.py of KaiFukazawa/RAMAC
    @ f2c1ed6), each deliberate: ``n_cos`` is its own setting (the public code ties the
    cosine size to the number of sampled levels N, so N = 8 leaves 8 frequencies; IQN's
    paper uses 64, Dabney et al. 2018 sec. 3.1); hidden layers use ``nn.Linear``'s default
    initialisation and the head U(+-3e-3) (public: N(0, 0.1) and U(+-3e-4)); and levels
    may differ per batch row, [B, N] (public: one [N] draw shared by the batch; a shared
    [N] is accepted too), which lowers the variance of the loss and the risk term.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_critics: int = 2,
        hidden: int = 256,
        embed_dim: int = 128,
        n_cos: int = 64,
        head_hidden: int = 256,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.act = activation_fn(activation)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.n_critics, self.embed_dim, self.n_cos = n_critics, embed_dim, n_cos
        e = n_critics
        self.state_layer = EnsembleLinear(e, obs_dim, hidden, shared_input=True)
        self.action_layer = EnsembleLinear(e, act_dim, hidden, shared_input=True)
        self.joint_layer = EnsembleLinear(e, 2 * hidden, embed_dim)
        self.tau_layer = EnsembleLinear(e, n_cos, embed_dim, shared_input=True)
        self.head_hidden = EnsembleLinear(e, embed_dim, head_hidden)
        self.head_out = EnsembleLinear(e, head_hidden, 1)
        # Small final layer so initial quantiles start near 0. The RADAC code uses U(+-3e-4)
        # with zero bias (docs/reference-code.md, "RADAC", "IQN critic"); +-3e-3 as in DDPG heads.
        nn.init.uniform_(self.head_out.weight, -3e-3, 3e-3)
        nn.init.zeros_(self.head_out.bias)

    def features(self, obs: Tensor, actions: Tensor) -> Tensor:
        """State-action features phi(s, a): obs [B, ds], actions [B, da] -> [E, B, embed_dim]."""
        h_s = self.act(self.state_layer(obs))
        h_a = self.act(self.action_layer(actions))
        return self.act(self.joint_layer(torch.cat([h_s, h_a], dim=-1)))

    def quantiles(self, features: Tensor, taus: Tensor) -> Tensor:
        """Quantile values from precomputed features [E, B, emb] at taus [B, N] or [N].

        Returns [E, B, N]. A 1-D ``taus`` is shared by every batch row; every critic of the
        ensemble sees the same levels.
        """
        if taus.dim() not in (1, 2):
            raise ValueError(f"taus must be [B, N] or [N], got shape {tuple(taus.shape)}")
        psi = self.act(self.tau_layer(cosine_embedding(taus, self.n_cos)))  # [E, (B,) N, emb]
        if taus.dim() == 1:
            psi = psi.unsqueeze(1)  # [E, 1, N, emb]
        h = self.act(self.head_hidden(features.unsqueeze(2) * psi))  # [E, B, N, head_hidden]
        return self.head_out(h).squeeze(-1)

    def forward(self, obs: Tensor, actions: Tensor, taus: Tensor) -> Tensor:
        """Quantile values Z_e(s_b, a_b; tau_bn): [E, B, N] for taus [B, N] or shared [N]."""
        return self.quantiles(self.features(obs, actions), taus)


# How the quantile Huber weight |tau - 1{delta < 0}| picks its level tau for the pair
# (current quantile i, target sample j): "current" is the correct loss (tau_i); "target" is
# THE PUBLIC RADAC CODE'S BUG, kept only to measure what it does (see quantile_huber_loss).
TAU_WEIGHTINGS = ("current", "target")


def quantile_huber_loss(
    current: Tensor,
    taus: Tensor,
    target: Tensor,
    kappa: float = 1.0,
    tau_weighting: str = "current",
) -> Tensor:
    """Quantile Huber loss over all (current i, target j) pairs (Dabney et al. 2018, eq. 3).

    current: [..., B, N] predicted quantiles at levels ``taus`` [B, N] (or shared [N]);
    target: [B, M] (or [..., B, M]) target samples, already detached by the caller.
    delta_ij = target_j - current_i, rho_ij = |tau_i - 1{delta_ij < 0}| huber_kappa(delta_ij)
    / kappa. Reduction: mean over targets j, sum over current quantiles i, mean over the
    batch, sum over leading (ensemble) dims, so each critic gets its own full-scale loss.

    ``tau_weighting="current"`` (the default, and the correct loss): the weight uses the
    CURRENT quantile's level tau_i.

    ``tau_weighting="target"`` reproduces THE PUBLIC RADAC CODE'S BUG, for comparison only:
    the weight's level is indexed by the TARGET sample, |tau_j - 1{delta_ij <= 0}|, where
    tau_j is the j-th of the levels ``taus`` that were drawn for the current quantiles
    (``quantile_huber_loss(target, current, tau_k)`` in agents/radac.py of KaiFukazawa/RAMAC
    @ f2c1ed6 is passed the current quantiles' levels ``tau_k`` and broadcasts them along the
    target axis; the target's own levels ``tau_k_`` never enter the loss). So N must equal
    M. Off the diagonal i = j the weight's level is then unrelated to quantile i, and each
    fitted quantile is pulled towards the median (docs/fidelity.md "The IQN critic";
    tests/nets/test_iqn.py fits a known distribution both ways). The public code's
    reduction (sum over targets, mean over current quantiles) equals this one when N = M;
    its ``<= 0`` differs from ``< 0`` only on exact ties, which have probability zero, so
    the indicator is shared.
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    if tau_weighting not in TAU_WEIGHTINGS:
        raise ValueError(f"tau_weighting must be one of {TAU_WEIGHTINGS}, got '{tau_weighting}'")
    delta = target.unsqueeze(-2) - current.unsqueeze(-1)  # [..., B, N, M]
    abs_delta = delta.abs()
    huber = torch.where(abs_delta <= kappa, 0.5 * delta.pow(2), kappa * (abs_delta - 0.5 * kappa))
    if tau_weighting == "current":
        level = taus.unsqueeze(-1)  # [B, N, 1]: tau_i for every target j
    else:  # the public code's bug: the level at the target's index j
        if taus.shape[-1] != target.shape[-1]:
            raise ValueError(
                "tau_weighting 'target' pairs level j with target j: it needs as many "
                f"levels as targets, got {taus.shape[-1]} and {target.shape[-1]}"
            )
        level = taus.unsqueeze(-2)  # [B, 1, M]: tau_j for every current quantile i
    weight = (level - (delta.detach() < 0).to(delta.dtype)).abs()
    rho = weight * huber / kappa
    return rho.mean(dim=-1).sum(dim=-1).mean(dim=-1).sum()
