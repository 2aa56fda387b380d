"""RADAC: a diffusion actor trained to maximise the CVaR of IQN critics, anchored by BC.

Actor loss = lambda_bc * BC(eps-MSE) - eta_t * mean min_e Z_e(s, a_hat, tau~), with a_hat
sampled through the whole reverse chain and tau~ = distortion(u) (CVaR_0.1 by default).
The public code: agents/radac.py, configs/radac.yaml and main.py of KaiFukazawa/RAMAC @
f2c1ed6, its settings in numbers in docs/reference-code.md ("RADAC", "RADAC per dataset").
Differences from it, each a fix of docs/reference-code.md, "Public-code issues": the quantile
Huber loss pairs tau with the *current* quantile (item 1); the EMA target actor starts from
the online weights (item 5); no per-iteration cosine lr decay. The critic has 64 cosine
features of tau on every D4RL dataset (``n_cos``); the public critic ties them to N (32/16/8
per dataset: utils/quantile_value.py @ f2c1ed6; ramac.nets.iqn, docs/reference-code.md).
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
    """RADAC hyperparameters; the defaults are the public code's for halfcheetah-medium-expert-v2
    (configs/algos/radac.yaml overrides them per dataset). Quoted sections ("RADAC", step n)
    are those of docs/reference-code.md."""

    batch_size: int = 256  # main.py ("RADAC", "Optimisers and budget")
    lr_actor: float = 3e-4  # lr_actor ("RADAC per dataset")
    lr_critic: float = 5e-5  # lr_critic, per critic ("RADAC per dataset")
    gamma: float = 0.99  # main.py --discount ("RADAC", "Optimisers and budget")
    tau: float = 0.005  # Polyak rate of the target critics, every step ("RADAC" step 7)
    grad_norm: float = 5.0  # clip of the actor and of each critic; 0 = off ("RADAC per dataset")
    # actor
    n_steps: int = 5  # diffusion steps T, VP schedule (main.py --T 5; "RADAC", "Diffusion")
    actor_hidden: int = 256  # denoiser width: 3 x 256 Mish ("RADAC", "Denoiser")
    actor_layers: int = 3  # the denoiser's hidden layers ("RADAC", "Denoiser")
    time_dim: int = 16  # sinusoidal time embedding ("RADAC", "Denoiser")
    actor_action_gain: float = 1.0  # x the action input's initial weights (TimeConditionedMLP)
    lambda_bc: float = 1.0  # weight of the BC loss ("RADAC per dataset")
    eta: float = 0.02  # weight of the risk term after warmup ("RADAC per dataset")
    eta_warmup_steps: int = 0  # eta = 0 before this step ("RADAC per dataset": warm-up)
    eta_ramp_steps: int = 0  # linear ramp after warmup; 0 = jump (main.py default; "RADAC" step 5)
    normalize_q: bool = False  # divide the risk term by its detached mean |Z| (off in RADAC)
    risk: str = "cvar"  # distortion of the actor's levels: neutral|cvar|wang|cpw|power
    # ("Risk distortions"; RADAC's is CVaR_0.1)
    risk_param: float | None = 0.1  # its parameter (CVaR alpha 0.1); None = risk.py default
    ema_decay: float = 0.995  # EMA of the actor, used only for target actions ("RADAC" step 6)
    ema_every: int = 5  # EMA update period in steps ("RADAC" step 6)
    ema_start: int = 1000  # steps before averaging starts (start_steps; "RADAC" step 6)
    # critics
    n_critics: int = 2  # double IQN ("RADAC", "IQN critic")
    n_quantiles: int = 32  # N: levels per call for tau, tau' and tau~ ("RADAC per dataset")
    critic_hidden: int = 256  # state and action branches ("RADAC", "IQN critic")
    embed_dim: int = 128  # fusion / tau embedding width ("RADAC per dataset": emb)
    n_cos: int = 64  # cosine features of tau; the public code ties it to N ("RADAC")
    head_hidden: int = 256  # head layer after the product ("RADAC", "IQN critic")
    q_clip: float | None = 300.0  # clamp TD targets to +-q_clip; None = off ("RADAC per dataset")
    # relu as in the reference critics; leaky_relu keeps rare-penalty tails learnable
    # (see ramac.nets.iqn.ACTIVATIONS).
    critic_activation: str = "relu"
    # current = the correct quantile Huber loss; target = THE PUBLIC RADAC CODE'S BUG (the
    # weight's level indexed by the target sample: quantiles pulled to the median), kept
    # only to measure what it does (ramac.nets.iqn.quantile_huber_loss).
    tau_weighting: str = "current"


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
        # The online actor is evaluated; the EMA only provides target actions (as the public code;
        # docs/reference-code.md, "RADAC" step 6).
        return self.actor.sample(obs, generator=generator)


register("radac", RADACConfig, RADAC, "RADAC")


@dataclass
class RADACPublicLossConfig(RADACConfig):
    """RADAC with THE PUBLIC RADAC CODE'S CRITIC LOSS, for comparison only."""

    # The quantile Huber weight's level indexed by the target sample, not the current
    # quantile (ramac.nets.iqn.quantile_huber_loss; agents/radac.py of KaiFukazawa/RAMAC @
    # f2c1ed6): every quantile is pulled towards the median (docs/fidelity.md).
    tau_weighting: str = "target"


# Every per-dataset value is RADAC's (configs/algos/radac.yaml); only the loss differs.
register(
    "radac_public_loss",
    RADACPublicLossConfig,
    RADAC,
    "RADAC (public code's loss bug)",
    yaml_of="radac",
)
