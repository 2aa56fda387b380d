"""FQL, flow Q-learning (Park, Li, Levine 2025): a one-step policy distilled from a flow.

A flow BC policy is trained by flow matching alone; a one-step policy mu(s, z) is trained
to stay close to the flow's Euler rollout from the same noise z and to maximise Q:
    loss = BC_flow + alpha * ||mu(s, z) - flow(s, z)||^2 - Q(s, clip(mu(s, z))) / mean|Q|.
Twin Q critics with targets whose next actions come from mu; ``act`` uses mu (the flow is
never evaluated). This is the FQL design that RAMAC's public RAFMAC code half-implements
(agents/rafmac.py of KaiFukazawa/RAMAC @ f2c1ed6; docs/reference-code.md, "RAFMAC"). The
RAMAC paper does not give its FQL settings (docs/reference-code.md, "The paper"); the
defaults below are FQL's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ramac.agents.base import Agent, Phase, register
from ramac.agents.common import (
    no_param_grads,
    target_actions,
    twin_q_loss,
)
from ramac.data.dataset import Batch
from ramac.nets.common import polyak_update
from ramac.nets.flow import FlowActor
from ramac.nets.mlp import mlp
from ramac.nets.qnet import QEnsemble


@dataclass
class FQLConfig:
    """FQL hyperparameters (FQL's defaults; Park et al. 2025)."""

    batch_size: int = 256  # FQL default
    lr: float = 3e-4  # one Adam lr for every network (FQL default)
    gamma: float = 0.99  # FQL default
    tau: float = 0.005  # Polyak rate of the target critics, every step (FQL default)
    # Distillation weight. FQL tunes it per task (from ~3 up to ~1000 across its OGBench /
    # D4RL tasks) and reports no Gym-locomotion value; 10 is the value the brief fixed.
    alpha: float = 10.0
    normalize_q: bool = True  # divide the Q term by its detached mean |Q| (FQL's
    # ``normalize_q_loss``; FQL's own default is off, the RAMAC comparison turns it on)
    q_agg: str = "mean"  # target aggregation over the twin critics: mean (FQL default) | min
    flow_steps: int = 10  # Euler steps of the flow BC policy (FQL default)
    actor_hidden: int = 512  # flow and one-step MLP width (FQL: 4 x 512)
    actor_layers: int = 4  # (FQL: 4 x 512)
    time_dim: int = 16  # time embedding of the velocity field
    actor_action_gain: float = 1.0  # x the flow's action-input initial weights (TimeConditionedMLP)
    critic_hidden: int = 512  # FQL value net: 4 x 512, GELU, layer norm
    critic_layers: int = 4  # (FQL: 4 x 512)
    critic_layer_norm: bool = True  # (FQL: layer norm in the value net)
    grad_norm: float = 0.0  # FQL does not clip gradients; >0 clips actor and critic


class FQL(Agent):
    """Flow BC policy + one-step distilled policy + twin Q."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: FQLConfig) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        self.flow = self.add_net(
            "flow",
            FlowActor(
                obs_dim,
                act_dim,
                max_action,
                c.flow_steps,
                c.actor_hidden,
                c.actor_layers,
                c.time_dim,
                action_gain=c.actor_action_gain,
            ),
        )
        self.onestep = self.add_net(
            "onestep", mlp(obs_dim + act_dim, [c.actor_hidden] * c.actor_layers, act_dim, nn.GELU)
        )
        self.critic = self.add_net(
            "critic",
            QEnsemble(
                obs_dim, act_dim, 2, c.critic_hidden, c.critic_layers, nn.GELU, c.critic_layer_norm
            ),
        )
        self.critic_target = self.add_frozen("critic_target", self.critic)
        actor_params = [*self.flow.parameters(), *self.onestep.parameters()]
        self.optims["actor"] = torch.optim.Adam(actor_params, lr=c.lr)
        self.optims["critic"] = torch.optim.Adam(self.critic.parameters(), lr=c.lr)

    def one_step(self, obs: Tensor, noise: Tensor) -> Tensor:
        """The one-step policy mu(s, z), clipped to the action box (as FQL clips it)."""
        out = self.onestep(torch.cat([obs, noise], dim=-1))
        return out.clamp(-self.max_action, self.max_action)

    def phases(self) -> list[Phase]:
        """Twin-Q TD step, then the flow + one-step actor step (then target critics)."""
        return self.critic_then_actor(self.config.grad_norm)

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        next_actions = target_actions(lambda s: self.one_step(s, torch.randn_like(b.actions)), b)
        return twin_q_loss(self.critic, self.critic_target, b, next_actions, c.gamma, c.q_agg)

    def actor_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.config
        bc = self.flow.loss(b.actions, b.obs)
        noise = torch.randn_like(b.actions)
        with torch.no_grad():
            target = self.flow.sample(b.obs, noise=noise)
        raw = self.onestep(torch.cat([b.obs, noise], dim=-1))
        distill = F.mse_loss(raw, target)
        with no_param_grads(self.critic):
            q = self.critic(b.obs, raw.clamp(-self.max_action, self.max_action)).mean(dim=0)
        q_mean = q.mean()
        q_term = q_mean / (q.abs().mean().detach() + 1e-8) if c.normalize_q else q_mean
        loss = bc + c.alpha * distill - q_term
        logs = {"actor_loss": loss, "bc_loss": bc, "distill_loss": distill, "q_term": q_term}
        return loss, {name: value.detach() for name, value in logs.items()}

    def after_phases(self) -> None:
        polyak_update(self.critic_target, self.critic, self.config.tau)

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        shape = (obs.shape[0], self.act_dim)
        noise = torch.randn(shape, generator=generator, device=obs.device, dtype=obs.dtype)
        return self.one_step(obs, noise)


register("fql", FQLConfig, FQL, "FQL")
