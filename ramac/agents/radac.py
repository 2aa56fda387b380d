"""RADAC: a diffusion actor trained to maximise the CVaR of IQN critics, anchored by BC.

Actor loss = lambda_bc * BC(eps-MSE) - eta_t * mean min_e Z_e(s, a_hat, tau~), with a_hat
sampled through the whole reverse chain and tau~ = distortion(u) (CVaR_0.1 by default).
ref: ramac-oraac-code.md §1; paper-tables.md §1.6. Differences from the public code, each
a fix from §8: the quantile Huber loss pairs tau with the *current* quantile (§8.1); the
EMA target actor starts from the online weights (§8.5); no per-iteration cosine lr decay.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ramac.agents.base import Agent, Phase, register
from ramac.agents.common import (
    distortion_from,
    ema_tick,
    eta_at,
    iqn_critic_loss,
    make_actor,
    make_iqn,
    no_param_grads,
    normalised_mean,
    risk_quantiles,
    target_actions,
)
from ramac.data.dataset import Batch
from ramac.nets.common import polyak_update


@dataclass
class RADACConfig:
    """RADAC hyperparameters; defaults = halfcheetah-medium-expert-v2 (ref §1 table)."""

    batch_size: int = 256  # ref §1 "Optimisers": batch 256
    lr_actor: float = 3e-4  # ref §1 table lr_a
    lr_critic: float = 5e-5  # ref §1 table lr_c (per critic)
    gamma: float = 0.99  # ref §1
    tau: float = 0.005  # Polyak rate of the target critics, every step (ref §1 step 7)
    grad_norm: float = 5.0  # clip_grad_norm of the actor and of each critic; 0 = off (ref §1)
    # actor
    n_steps: int = 5  # diffusion steps T, VP schedule (ref §1 "Diffusion": main.py T=5)
    actor_hidden: int = 256  # denoiser width (ref §1 "Denoiser": 3 x 256 Mish)
    actor_layers: int = 3
    time_dim: int = 16  # sinusoidal time embedding (ref §1 "Denoiser")
    actor_action_gain: float = 1.0  # x the action input's initial weights (TimeConditionedMLP)
    lambda_bc: float = 1.0  # weight of the BC loss (ref §1 table)
    eta: float = 0.02  # weight of the risk term after warmup (ref §1 table)
    eta_warmup_steps: int = 0  # eta = 0 before this step (ref §1 table "warmup")
    eta_ramp_steps: int = 0  # linear ramp after warmup; 0 = jump (main.py default, ref §1 step 5)
    normalize_q: bool = False  # divide the risk term by its detached mean |Z| (off in RADAC)
    risk: str = "cvar"  # distortion of the actor's levels: neutral|cvar|wang|cpw|power (ref §3)
    risk_param: float | None = 0.1  # its parameter (CVaR alpha 0.1); None = risk.py default
    ema_decay: float = 0.995  # EMA of the actor, used only for target actions (ref §1 step 6)
    ema_every: int = 5  # EMA update period in steps (ref §1 step 6)
    ema_start: int = 1000  # steps before averaging starts (ref §1 step 6: start_steps)
    # critics
    n_critics: int = 2  # double IQN (ref §1)
    n_quantiles: int = 32  # N: levels per call for tau, tau' and tau~ (ref §1 table)
    critic_hidden: int = 256  # state and action branches (ref §1 "IQN critic")
    embed_dim: int = 128  # fusion / tau embedding width (ref §1 table "emb")
    n_cos: int = 64  # cosine features of tau; the public code ties it to N (ref §1)
    head_hidden: int = 256  # head layer after the product (ref §1 "IQN critic")
    q_clip: float | None = 300.0  # clamp TD targets to +-q_clip; None = off (ref §1 table)
    # relu as in the reference critics; leaky_relu keeps rare-penalty tails learnable
    # (see ramac.nets.iqn.ACTIVATIONS).
    critic_activation: str = "relu"
    # current = the correct quantile Huber loss; target = THE PUBLIC RADAC CODE'S BUG (the
    # weight's level indexed by the target sample: quantiles pulled to the median), kept
    # only to measure what it does (ramac.nets.iqn.quantile_huber_loss).
    tau_weighting: str = "current"
    device: str = "cpu"


class RADAC(Agent):
    """Diffusion actor + double IQN critic, maximising a distorted (CVaR) return."""

    actor_kind = "diffusion"  # RAFMAC swaps in "flow"; everything else is shared

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: RADACConfig) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        self.distortion = distortion_from(c.risk, c.risk_param)
        self.actor = self.add_net(
            "actor", make_actor(self.actor_kind, obs_dim, act_dim, max_action, c)
        )
        self.critic = self.add_net("critic", make_iqn(obs_dim, act_dim, c))
        self.ema_actor = self.add_frozen("ema_actor", self.actor)
        self.critic_target = self.add_frozen("critic_target", self.critic)
        self.optims["actor"] = torch.optim.Adam(self.actor.parameters(), lr=c.lr_actor)
        self.optims["critic"] = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)

    def risk_term(self, obs: Tensor, actions: Tensor) -> Tensor:
        """The actor's objective: mean of min_e Z_e(s, a, tau~) over batch and levels."""
        z = risk_quantiles(self.critic, obs, actions, self.distortion, self.config.n_quantiles)
        return normalised_mean(z, self.config.normalize_q)

    def phases(self) -> list[Phase]:
        """Critic TD step, then actor step on the updated critics (then EMA and targets)."""
        return self.critic_then_actor(self.config.grad_norm, per_member=self.config.n_critics)

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        next_actions = target_actions(self.ema_actor.sample, b)
        return iqn_critic_loss(
            self.critic,
            self.critic_target,
            b,
            next_actions,
            c.gamma,
            c.n_quantiles,
            c.q_clip,
            c.tau_weighting,
        )

    def actor_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        eta = eta_at(self.step, c.eta, c.eta_warmup_steps, c.eta_ramp_steps)
        bc = self.actor.loss(b.actions, b.obs)
        with no_param_grads(self.critic):
            risk = self.risk_term(b.obs, self.actor.sample(b.obs))
        loss = c.lambda_bc * bc - eta * risk
        logs = {"actor_loss": loss.detach(), "bc_loss": bc.detach(), "risk": risk.detach()}
        return loss, logs | {"eta": torch.tensor(eta, dtype=torch.float64)}

    def after_phases(self) -> None:
        c = self.config
        ema_tick(self.ema_actor, self.actor, self.step, c.ema_start, c.ema_every, c.ema_decay)
        polyak_update(self.critic_target, self.critic, c.tau)

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        # The online actor is evaluated; the EMA only provides target actions (ref §1 step 6).
        return self.actor.sample(obs, generator=generator)


register("radac", RADACConfig, RADAC, "RADAC")
