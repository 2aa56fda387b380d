"""Small building blocks shared by the networks: soft target updates, EMA, time embeddings,
fixed input standardisation."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.nets.mlp import Mish, mlp


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Soft-update ``target`` towards ``source``: p_t <- (1 - tau) p_t + tau p_s, in place.

    Used for target critics (tau = 0.005; docs/reference-code.md, "RADAC" step 7) and, through
    :class:`EMA`, for the actor average. Buffers (not learned) are copied outright.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"polyak tau must lie in [0, 1], got {tau}")
    for p_t, p_s in zip(target.parameters(), source.parameters(), strict=True):
        p_t.lerp_(p_s, tau)
    for b_t, b_s in zip(target.buffers(), source.buffers(), strict=True):
        b_t.copy_(b_s)


class Standardizer(nn.Module):
    """x -> (x - mean) / std with a fixed per-feature mean and std (buffers, not learned).

    Buffers, so the statistics travel with the owner's ``state_dict`` (a run's checkpoint)
    and are never stepped by an optimiser; until :meth:`fit` they are the identity.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: Any, eps: float) -> None:
        """mean and (population) std + ``eps`` of the rows of ``x`` [n, dim], computed in
        float64 and stored in float32."""
        x = torch.as_tensor(x, dtype=torch.float64)
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(x.std(dim=0, correction=0) + eps)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class SinusoidalTimeEmbedding(nn.Module):
    """Map a batch of (float) time values to [sin(t f_k), cos(t f_k)] features.

    half = dim // 2 frequencies f_k = exp(-k ln(1e4) / (half - 1)), k = 0..half-1; the output
    is cat[sin, cos] (docs/reference-code.md: "RADAC", "Denoiser": dim 16 gives freqs
    exp(-k ln(1e4)/7), k = 0..7; "RAFMAC", "Networks": dim 4 gives freqs 1 and 1e-4).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"time embedding dim must be even and >= 4, got {dim}")
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-torch.arange(half, dtype=torch.float32) * math.log(1e4) / (half - 1))
        # Not persistent: derived from ``dim``, so checkpoints hold learned weights only.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """t: [B] (integer step indices are cast to float) -> [B, dim]."""
        args = t.to(self.freqs.dtype).unsqueeze(-1) * self.freqs
        return torch.cat([args.sin(), args.cos()], dim=-1)


class TimeConditionedMLP(nn.Module):
    """MLP on cat[x, time_encoder(t), obs] with Mish activations; output has x's width.

    The epsilon network of the diffusion actor and the velocity field of the flow actor share
    this layout (docs/reference-code.md: "RADAC", "Denoiser"; "RAFMAC", "Networks"): time encoder
    Sinusoidal(time_dim) -> Linear(time_dim, 2 time_dim), Mish, Linear(2 time_dim, time_dim);
    then n_layers x (Linear hidden + Mish) -> Linear act_dim.

    ``action_gain`` multiplies the initial first-layer weights on x (1 = ``nn.Linear``'s
    default). With low-dimensional actions whose modes are ~0.1 wide (the 2-D bandit) the
    default weights (<= 1/sqrt(fan-in) on x) keep every Mish unit in its near-linear range
    over the data, and training sits for tens of thousands of updates at the best *linear*
    denoiser; a gain of ~1/(the data's fine scale) starts the units where they can bend.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int = 256,
        n_layers: int = 3,
        time_dim: int = 16,
        time_scale: float = 1.0,
        action_gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.act_dim, self.time_dim, self.obs_dim = act_dim, time_dim, obs_dim
        self.time_scale = time_scale
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(time_dim),
            nn.Linear(time_dim, 2 * time_dim),
            Mish(),
            nn.Linear(2 * time_dim, time_dim),
        )
        self.net = mlp(act_dim + time_dim + obs_dim, [hidden] * n_layers, act_dim, Mish)
        if action_gain != 1.0:
            with torch.no_grad():
                self.net[0].weight[:, :act_dim].mul_(action_gain)  # x comes first in the input

    def forward(self, x: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """x: [B, da], t: [B] (step index or flow time), obs: [B, ds] -> [B, da]."""
        t_emb = self.time_mlp(t.to(x.dtype) * self.time_scale)
        return self.net(torch.cat([x, t_emb, obs], dim=-1))

    def along_chain(self, times: Tensor, obs: Tensor) -> Callable[[Tensor, int], Tensor]:
        """The network at the chain's times ``times`` [T] and states ``obs`` [B], as a
        function of (x [B, da], k) = forward(x, times[k] for every row, obs).

        A sampler calls the network T times with the same states and, at each step, one
        time for the whole batch. So the first layer is split by input block: the time
        MLP and the time's share run once for all T steps, on T rows, and the states' share
        once per chain; each step only adds x's share. The same function as ``forward``
        (to float rounding), with a fraction of its operations per step.
        """
        first = self.net[0]
        w_x, w_t, w_s = first.weight.split([self.act_dim, self.time_dim, self.obs_dim], dim=1)
        time_share = F.linear(self.time_mlp(times.to(obs.dtype) * self.time_scale), w_t)
        obs_share = F.linear(obs, w_s, first.bias)
        rest = self.net[1:]

        def step(x: Tensor, k: int) -> Tensor:
            return rest(F.linear(x, w_x) + obs_share + time_share[k])

        return step


class EMA:
    """Exponential moving average of a module's weights, kept in a frozen deep copy.

    ``update`` does avg <- decay avg + (1 - decay) model (decay 0.995 in RADAC;
    docs/reference-code.md, "RADAC" step 6). ``reset`` copies the online weights outright,
    which the toolkit does until averaging starts and neither the RADAC nor the Diffusion-QL
    code does (docs/reference-code.md, "Public-code issues", item 5; docs/fidelity.md).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1], got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``."""
        polyak_update(self.model, model, 1.0 - self.decay)

    def reset(self, model: nn.Module) -> None:
        """Copy ``model``'s weights into the average."""
        polyak_update(self.model, model, 1.0)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights plus the decay, for checkpoints."""
        return {"decay": self.decay, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.decay = float(state["decay"])
        self.model.load_state_dict(state["model"])
