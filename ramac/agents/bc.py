"""BC: a diffusion policy trained by behaviour cloning only (the eps-MSE of RADAC's actor).

The lower anchor of the comparison: RADAC with eta = 0 and no critic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ramac.agents.base import Agent, Phase, register
from ramac.agents.common import make_actor
from ramac.data.dataset import Batch


@dataclass
class BCConfig:
    """Diffusion-BC hyperparameters: the RADAC actor's (docs/reference-code.md, "RADAC",
    quoted below as "RADAC")."""

    batch_size: int = 256  # RADAC's ("RADAC", "Optimisers and budget")
    lr: float = 3e-4  # RADAC's lr_actor ("RADAC per dataset")
    grad_norm: float = 0.0  # clip_grad_norm; 0 = off
    n_steps: int = 5  # diffusion steps T, VP schedule ("RADAC", "Diffusion")
    actor_hidden: int = 256  # 3 x 256 Mish denoiser ("RADAC", "Denoiser")
    actor_layers: int = 3  # its hidden layers ("RADAC", "Denoiser")
    time_dim: int = 16  # its sinusoidal time embedding ("RADAC", "Denoiser")
    actor_action_gain: float = 1.0  # x the action input's initial weights (TimeConditionedMLP)
    # Cosine decay of the lr to 0 over this many updates (Agent.schedule_learning_rates),
    # stated against the paper profile's budget and scaled with the run's; 0 = constant lr.
    lr_decay_steps: int = 0


class BC(Agent):
    """Diffusion behaviour cloning."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: BCConfig) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        self.actor = self.add_net(
            "actor",
            make_actor("diffusion", obs_dim, act_dim, max_action, c),
        )
        self.optims["actor"] = torch.optim.Adam(self.actor.parameters(), lr=c.lr)

    def phases(self) -> list[Phase]:
        """One eps-MSE step."""
        return [Phase("actor", self.bc_loss, self.config.grad_norm)]

    def bc_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self.actor.loss(b.actions, b.obs)
        return loss, {"bc_loss": loss.detach()}

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.actor.sample(obs, generator=generator)


register("bc", BCConfig, BC, "BC")
