"""RAFMAC: RADAC with a flow-matching actor (Euler sampler) in place of the diffusion one.

What the paper describes, not what the public code does (agents/rafmac.py of
KaiFukazawa/RAMAC @ f2c1ed6; docs/reference-code.md, "RAFMAC" and "Public-code issues",
item 2). The released code trains a one-step student with the Q term and never acts with
it, so the evaluated Euler policy is plain flow-matching BC; here the risk gradient flows
through the K-step Euler rollout into the policy that is evaluated (as RADAC does through
its reverse chain). Also fixed: the actor term uses risk-distorted levels (the public
default uses uniform ones), targets bootstrap (its ``bandit=True`` never does), not_done
is not inverted, rewards are not clamped to [-1, 1], and the learning rates, alpha and
distortion are wired from the config. The EMA (its ``ema_v``, saved but unused there)
provides the target actions, as in RADAC.

RAFMAC is RADAC with a flow actor. The paper writes one actor loss for both instantiations
(lambda_bc * BC - eta * CVaR_alpha(Z(s, a_hat)), a_hat sampled through the actor's chain;
only the sampler differs) and gives no RAFMAC hyperparameter of its own (no table; the
public rafmac.yaml is the only source; docs/fidelity.md, "RAFMAC = RADAC with a flow
actor"). So everything but the actor is RADAC's, per dataset, read from
configs/algos/radac.yaml: the critics (widths, levels, critic lr, TD targets clamped at
+-300, +-150 on hopper-medium-replay), lambda_bc, eta and its warm-up, on the same
unnormalised CVaR term. The risk weight only means the same thing on critics of the same
scale: with the public RAFMAC's critic (no clamp, lr 3e-4) eta would pull on another
scale. RAFMAC's own settings are its flow actor's (configs/rafmac.yaml
and RAFMACConfig): K Euler steps, width 128, EMA start, and the public grad_norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ramac.agents.base import Phase, register
from ramac.agents.common import eta_at, no_param_grads
from ramac.agents.radac import RADAC, RADACConfig
from ramac.data.dataset import Batch
from ramac.nets.mlp import Mish, mlp


@dataclass
class RAFMACConfig(RADACConfig):
    """RAFMAC hyperparameters: RADAC's (and radac.yaml's per dataset) but for the flow actor's,
    which are configs/rafmac.yaml and agents/rafmac.py of KaiFukazawa/RAMAC @ f2c1ed6
    (docs/reference-code.md, "RAFMAC", quoted below as "RAFMAC"); configs/algos/rafmac.yaml
    holds only these per dataset (read after radac.yaml: ``ramac.agents.base.override_files``).
    The time embedding keeps RADAC's 16 frequencies, not the public Sinusoidal(4): FlowActor
    scales t by 1000, which a 4-dim embedding (frequencies 1 and 1e-4) would alias."""

    grad_norm: float = 0.6  # 0.6 on medium-expert, 0.8 on medium-replay ("RAFMAC": yaml values)
    n_steps: int = 10  # Euler steps K, flow_steps ("RAFMAC", "Flow matching")
    actor_hidden: int = 128  # velocity field width h = 128 ("RAFMAC", "Networks")
    ema_start: int = 500  # the public ``ema_v``: every 5 steps after step 500 ("RAFMAC")


# RAFMAC's own keys: what it sets apart from RADAC on a D4RL dataset (its flow actor's, and
# the public grad_norm); every other key is RADAC's (tests/agents/test_agents_config.py).
RAFMAC_OWN = ("grad_norm", "n_steps", "actor_hidden", "ema_start")


class RAFMAC(RADAC):
    """RADAC's losses and critics with a flow-matching actor."""

    actor_kind = "flow"


register("rafmac", RAFMACConfig, RAFMAC, "RAFMAC", yaml_of="radac")


@dataclass
class RAFMACPublicConfig(RAFMACConfig):
    """RAFMAC as configs/rafmac.yaml of the public code trains it (see RAFMACPublic): its
    critics, learning rates and risk weight, not RADAC's ("RAFMAC" as in RAFMACConfig)."""

    lr_actor: float = 3e-4  # main.py never passes the yaml lrs: Adam 3e-4 for all ("RAFMAC")
    lr_critic: float = 3e-4  # the same Adam 3e-4 ("RAFMAC")
    lambda_bc: float = 1.0  # rafmac.yaml sets no BC weight: BC enters at weight 1 ("RAFMAC")
    eta: float = 1000.0  # rafmac.yaml: on the normalised Q term of the student
    eta_warmup_steps: int = 0  # rafmac.yaml has no warm-up
    normalize_q: bool = True  # rafmac.yaml normalize_q_loss: true
    risk: str = "neutral"  # its default path evaluates the critics at uniform levels
    risk_param: float | None = None  # neutral has no parameter
    n_quantiles: int = 32  # 32 levels per call ("RAFMAC", "Networks")
    critic_hidden: int = 128  # state / action layers [h] ("RAFMAC", "Networks")
    embed_dim: int = 128  # embedding h ("RAFMAC", "Networks")
    n_cos: int = 32  # cosine dim 32 ("RAFMAC", "Networks")
    head_hidden: int = 128  # f layer [h] ("RAFMAC", "Networks")
    q_clip: float | None = None  # rafmac.yaml sets none (docs/reference-code.md, "RAMAC main.py")


class RAFMACPublic(RAFMAC):
    """The public code's RAFMAC design, for comparison only: the Q term trains a one-step
    student a = clamp(g(s, z)) (cat[s, z] -> h, Mish, h, Mish -> act) that never acts, and the
    evaluated Euler policy gets only the flow-matching BC loss, so this is flow BC with an
    idle critic and student. agents/rafmac.py of KaiFukazawa/RAMAC @ f2c1ed6; its bugs
    (no bootstrapping, inverted not_done, rewards clamped to +-1) are not reproduced.
    """

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        h = config.actor_hidden
        self.student = self.add_net("student", mlp(obs_dim + act_dim, [h, h], act_dim, Mish))
        self.optims["student"] = torch.optim.Adam(self.student.parameters(), lr=config.lr_actor)

    def phases(self) -> list[Phase]:
        """RADAC's critic and actor steps (the actor's loss is BC alone), then the student's."""
        return [*super().phases(), Phase("student", self.student_loss, self.config.grad_norm)]

    def actor_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        bc = self.actor.loss(b.actions, b.obs)
        return self.config.lambda_bc * bc, {"actor_loss": bc.detach(), "bc_loss": bc.detach()}

    def student_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """-eta * (normalised Q term) at the student's actions for fresh noise z ~ N(0, I)."""
        c = self.config
        eta = eta_at(self.step, c.eta, c.eta_warmup_steps, c.eta_ramp_steps)
        noise = torch.randn(b.obs.shape[0], self.act_dim, device=b.obs.device)
        actions = self.student(torch.cat([b.obs, noise], dim=-1))
        with no_param_grads(self.critic):
            q_term = self.risk_term(b.obs, actions.clamp(-self.max_action, self.max_action))
        return -eta * q_term, {"risk": q_term.detach()}


register("rafmac_public", RAFMACPublicConfig, RAFMACPublic, "RAFMAC (public code)")
