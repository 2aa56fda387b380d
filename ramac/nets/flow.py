"""Flow-matching actor: a state-conditioned velocity field integrated with Euler steps.

Same interface as :class:`~ramac.nets.diffusion.DiffusionActor`, so agents can swap actors
(docs/reference-code.md, "RAFMAC", "Flow matching").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.nets.common import TimeConditionedMLP

# The velocity field sees t in [0, 1] scaled by 1000 before the sinusoidal embedding, the
# DDPM convention, so its frequencies (1 .. 1e-4) span the whole interval. Unscaled, the
# fastest feature sin(t) would cover less than a sixth of a period (RAFMAC's Sinusoidal(4)
# on raw t; docs/reference-code.md, "RAFMAC", "Networks"), leaving time nearly invisible to
# the network.
FLOW_TIME_SCALE = 1000.0


class FlowActor(nn.Module):
    """Rectified-flow policy: x_0 ~ N(0, I), dx/dt = v(x_t, t, s), action = clamp(x_1).

    Velocity field: :class:`~ramac.nets.common.TimeConditionedMLP` on cat[x_t, emb(t), s]
    with Mish activations; trained by conditional flow matching on the straight path
    x_t = (1 - t) z + t a.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        max_action: float = 1.0,
        n_steps: int = 10,
        hidden: int = 256,
        n_layers: int = 3,
        time_dim: int = 16,
        action_gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.max_action, self.n_steps = float(max_action), n_steps
        self.velocity = TimeConditionedMLP(
            obs_dim,
            act_dim,
            hidden,
            n_layers,
            time_dim,
            time_scale=FLOW_TIME_SCALE,
            action_gain=action_gain,
        )

    def loss(self, actions: Tensor, obs: Tensor) -> Tensor:
        """Flow-matching BC loss: MSE(v(x_t, t, s), a - z), z ~ N(0, I), t ~ U(0, 1)."""
        z = torch.randn_like(actions)
        t = torch.rand(actions.shape[0], device=actions.device, dtype=actions.dtype)
        x_t = (1.0 - t[:, None]) * z + t[:, None] * actions
        return F.mse_loss(self.velocity(x_t, t, obs), actions - z)

    def sample(
        self,
        obs: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Euler-integrate the flow from x_0 = ``noise`` (default N(0, I)) over K = n_steps.

        t_k = k / K, x <- x + v(x, t_k, s) / K; only the final action is clamped to
        +-max_action (as RAFMAC's; docs/reference-code.md, "RAFMAC", "Flow matching").
        Differentiable; ``generator`` (on obs's
        device) seeds x_0.
        """
        batch = obs.shape[0]
        if noise is None:
            noise = torch.randn(
                (batch, self.act_dim), generator=generator, device=obs.device, dtype=obs.dtype
            )
        times = torch.arange(self.n_steps, device=obs.device, dtype=obs.dtype) / self.n_steps
        velocity = self.velocity.along_chain(times, obs)
        x = noise
        for k in range(self.n_steps):
            x = x + velocity(x, k) / self.n_steps
        return x.clamp(-self.max_action, self.max_action)

    def forward(self, obs: Tensor) -> Tensor:
        """An action per state: the same as :meth:`sample`."""
        return self.sample(obs)
