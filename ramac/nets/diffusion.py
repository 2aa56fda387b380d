"""DDPM actor: a state-conditioned diffusion policy with a short VP schedule (RADAC's actor).

The sampler stays differentiable through the whole reverse chain, so a critic's gradient
reaches every denoiser call (as in Diffusion-QL and the RADAC code; docs/reference-code.md,
"RADAC", "Diffusion").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.nets.common import TimeConditionedMLP


def vp_beta_schedule(n_steps: int, b_min: float = 0.1, b_max: float = 10.0) -> Tensor:
    """Variance-preserving noise schedule of a T-step DDPM.

    beta_t = 1 - exp(-b_min/T - 0.5 (b_max - b_min)(2t - 1)/T^2), t = 1..T
    (docs/reference-code.md, "RADAC", "Diffusion": T=5 gives beta ~ [0.196, 0.459, 0.636,
    0.755, 0.835]).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    t = torch.arange(1, n_steps + 1, dtype=torch.float64)
    log_alpha = -b_min / n_steps - 0.5 * (b_max - b_min) * (2 * t - 1) / n_steps**2
    return (1.0 - torch.exp(log_alpha)).float()


class DiffusionActor(nn.Module):
    """Epsilon-prediction DDPM policy pi(a | s) with a VP schedule of ``n_steps`` steps.

    Denoiser: :class:`~ramac.nets.common.TimeConditionedMLP` on cat[a_t, emb(t), s], t the
    integer step index (docs/reference-code.md, "RADAC", "Denoiser"). Actions live in
    [-max_action, max_action].
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        max_action: float = 1.0,
        n_steps: int = 5,
        hidden: int = 256,
        n_layers: int = 3,
        time_dim: int = 16,
        action_gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.max_action, self.n_steps = float(max_action), n_steps
        self.denoiser = TimeConditionedMLP(
            obs_dim, act_dim, hidden, n_layers, time_dim, action_gain=action_gain
        )
        self._register_schedule(vp_beta_schedule(n_steps))

    def _register_schedule(self, betas: Tensor) -> None:
        """Precompute the forward-process and posterior coefficients (non-persistent)."""
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, dim=0)
        abar_prev = torch.cat([torch.ones(1), abar[:-1]])
        coeffs = {
            "betas": betas,
            "sqrt_abar": abar.sqrt(),
            "sqrt_one_minus_abar": (1.0 - abar).sqrt(),
            # x0_hat = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps_hat
            "sqrt_recip_abar": (1.0 / abar).sqrt(),
            "sqrt_recipm1_abar": (1.0 / abar - 1.0).sqrt(),
            # q(x_{t-1} | x_t, x0) = N(c0 x0 + ct x_t, beta_t (1 - abar_{t-1}) / (1 - abar_t))
            "post_coef_x0": betas * abar_prev.sqrt() / (1.0 - abar),
            "post_coef_xt": (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar),
            "post_std": (betas * (1.0 - abar_prev) / (1.0 - abar)).sqrt(),
        }
        coeffs["step_indices"] = torch.arange(len(betas), dtype=torch.float32)
        for name, value in coeffs.items():
            self.register_buffer(name, value, persistent=False)

    def loss(self, actions: Tensor, obs: Tensor) -> Tensor:
        """Behaviour-cloning loss: MSE between predicted and true noise, t ~ U{0..T-1}."""
        t = torch.randint(0, self.n_steps, (actions.shape[0],), device=actions.device)
        eps = torch.randn_like(actions)
        x_t = self.sqrt_abar[t, None] * actions + self.sqrt_one_minus_abar[t, None] * eps
        return F.mse_loss(self.denoiser(x_t, t, obs), eps)

    def sample(
        self,
        obs: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Run the full reverse chain from x_T = ``noise`` (default N(0, I)) to an action.

        DDPM posterior sampling; the predicted x0 is clamped to +-max_action each step, no
        noise is added at the last step, and the result is clamped again. Differentiable;
        all noise is drawn from ``generator`` when given (on obs's device), so seeded sampling
        is repeatable.
        """
        shape = (obs.shape[0], self.act_dim)
        x = noise if noise is not None else self._randn(shape, obs, generator)
        denoise = self.denoiser.along_chain(self.step_indices, obs)
        for i in reversed(range(self.n_steps)):
            eps_hat = denoise(x, i)
            x0 = self.sqrt_recip_abar[i] * x - self.sqrt_recipm1_abar[i] * eps_hat
            x0 = x0.clamp(-self.max_action, self.max_action)
            x = self.post_coef_x0[i] * x0 + self.post_coef_xt[i] * x
            if i > 0:
                x = x + self.post_std[i] * self._randn(shape, obs, generator)
        return x.clamp(-self.max_action, self.max_action)

    def forward(self, obs: Tensor) -> Tensor:
        """An action per state: the same as :meth:`sample`."""
        return self.sample(obs)

    @staticmethod
    def _randn(shape: tuple[int, int], like: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
