"""CODAC, conservative offline distributional actor-critic (Ma, Jayaraman, Bastani,
NeurIPS 2021, arXiv 2107.06106).

A SAC-style tanh-Gaussian actor and twin quantile critics Z_e(s, a; tau). The critics minimise
the quantile Huber TD loss plus the CQL(H) penalty applied to the quantiles (paper eq. 8):
    w * E_tau E_s[ log sum_k exp(Z(s, a_k; tau) - log mu(a_k)) - Z(s, a_data; tau) ],
with the same uniform / pi(s) / pi(s') actions and importance weights as CQL
(``ramac.agents.cql``), and optionally the Lagrange form alpha' (w * gap - threshold). The
actor maximises a distorted expectation of the return distribution,
    E[alpha log pi(a|s) - min_e mean_n Z_e(s, a; beta(u_n))],  u_n ~ U(0, 1),
with beta from ``ramac.risk`` (CVaR_0.1 by default, so Wang, CPW and power work too).
Evaluation takes the deterministic action max_action * tanh(mean) (the authors'
``select_action(eval=True)``).

Reference for every number: the authors' code, JasonMa2016/CODAC @ 991866b:
``distributional/codac.py`` (class defaults), ``train_offline.py`` (how they are set) and
``configs/d4rl_configs.json`` (per dataset: min_z_weight -> cql_weight, lag -> cql_lagrange
and cql_threshold, actor_lr -> lr_actor and lr_alpha, entropy -> entropy_tuning). Read, not
copied. Differences, each deliberate:
- the actor's levels are sampled, tau = beta(u) (the toolkit's estimator, as RADAC and
  ORAAC); the code weights 32 IQN-style levels by beta'(tau), clamped at 5, which for
  CVaR_0.1 gives half the CVaR's weight (and its D4RL runs are risk-neutral by default);
- the critics are the code's QuantileMlp (``ramac.nets.quantile_mlp``: one layer on
  [s, a], LayerNorm after every hidden layer, a sigmoid tau embedding; widths 256, 64
  cosines, 32 levels), held as one ensemble, with tau ~ U(0, 1) for the TD loss (the code:
  normalised random fractions and midpoints);
- the penalty's data term is Z(s, a_data) at the penalty's own levels (the code subtracts the
  mean over the TD levels: the same in expectation, with more variance);
- the target actor starts as a copy of the actor (the code builds it with fresh weights);
- the entropy temperature is stepped after the actor (the code: before the critic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ramac.agents.base import register
from ramac.agents.common import (
    Distortion,
    distortion_from,
    no_bootstrap,
    terminal_targets,
)
from ramac.agents.cql import ConservativeSAC, conservative_gap, repeat
from ramac.data.dataset import Batch
from ramac.nets.common import polyak_update
from ramac.nets.iqn import quantile_huber_loss
from ramac.nets.quantile_mlp import QuantileMlpEnsemble


@dataclass
class CODACConfig:
    """CODAC hyperparameters (JasonMa2016/CODAC @ 991866b); defaults = halfcheetah-medium-
    expert (the json's -v0 entry: configs/algos/codac.yaml says how -v2 is chosen)."""

    batch_size: int = 256  # train_offline.py policy_train_batch_size
    lr_actor: float = 3e-4  # json actor_lr (halfcheetah-medium-expert)
    lr_critic: float = 3e-4  # codac.py critic_lr
    lr_alpha: float = 3e-4  # the temperature's Adam uses actor_lr (codac.py)
    lr_alpha_prime: float = 3e-4  # the Lagrange multiplier's Adam, codac.py lr
    gamma: float = 0.99  # codac.py
    tau: float = 0.005  # soft_target_tau, every step, critics and target actor (codac.py)
    actor_hidden: int = 256  # sac/model.py GaussianPolicy: 2 x 256 ReLU (hidden_size)
    actor_layers: int = 2  # its 2 hidden layers
    log_std_offset: float = 0.0  # GaussianPolicy has none
    alpha: float = 0.2  # entropy weight: fixed (codac.py alpha), or its start when tuned
    entropy_tuning: bool = False  # json entropy (halfcheetah-medium-expert: false)
    # The code's effective target: it computes -dim(A) and then overwrites it with its
    # ``target_entropy`` argument, -3, on every task.
    target_entropy: float | None = -3.0
    backup_entropy: bool = True  # TD target minus alpha log pi(a'|s') (codac.py)
    n_critics: int = 2  # zf1, zf2
    n_quantiles: int = 32  # num_quantiles: levels per TD loss and per actor step
    # The critic, ramac.nets.quantile_mlp (codac.py: QuantileMlp(hidden_sizes=[hidden_size,
    # hidden_size]), hidden_size 256):
    critic_hidden: int = 256  # the [s, a] layer and the tau embedding (hidden_sizes[-2])
    n_cos: int = 64  # cosine features, i = 1..64 (QuantileMlp embedding_size)
    head_hidden: int = 256  # the merge layer after the product (hidden_sizes[-1])
    critic_activation: str = "relu"  # its ReLUs (ramac.nets.iqn.ACTIVATIONS)
    # current = the correct quantile Huber loss; target = THE PUBLIC RADAC CODE'S BUG (the
    # weight's level indexed by the target sample: quantiles pulled to the median), kept
    # only to measure what it does (ramac.nets.iqn.quantile_huber_loss).
    tau_weighting: str = "current"
    risk: str = "cvar"  # the actor's distortion (the RAMAC table's CODAC is CVaR_0.1)
    risk_param: float | None = 0.1  # its parameter; None = the ramac.risk default
    cql_weight: float = 0.1  # json min_z_weight (halfcheetah-medium-expert)
    cql_n_actions: int = 10  # num_random: M actions per source (uniform, pi(s), pi(s'))
    n_penalty_quantiles: int = 1  # levels the penalty sees per state (the code: one per update)
    cql_lagrange: bool = False  # json lag > 0 (halfcheetah-medium-expert: lag -1, off)
    cql_threshold: float = 10.0  # lag, the gap alpha' holds w * gap to (argparse default)


def distorted_value(
    critic, obs: Tensor, actions: Tensor, u: Tensor, distortion: Distortion
) -> Tensor:
    """min_e mean_n Z_e(s, a; beta(u_n)): each critic's distorted expectation, then the
    smaller of them (codac.py takes the min of the two critics' risk values). u [B, N]
    uniform levels; returns [B]. With u ~ U(0, 1) the mean is an unbiased estimate of the
    distorted expectation, e.g. CVaR_alpha for beta(u) = alpha u."""
    return critic(obs, actions, distortion(u)).mean(dim=-1).min(dim=0).values


class CODAC(ConservativeSAC):
    """SAC-style actor + twin quantile critics (CODAC's QuantileMlp) with the CQL penalty on
    their quantiles."""

    log_alpha_prime_init = 0.0  # codac.py: log_alpha_prime = zeros(1)

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: CODACConfig) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        self.distortion = distortion_from(c.risk, c.risk_param)
        critic = QuantileMlpEnsemble(
            obs_dim,
            act_dim,
            c.n_critics,
            c.critic_hidden,
            c.n_cos,
            c.head_hidden,
            activation=c.critic_activation,
        )
        self.critic = self.add_net("critic", critic)
        self.critic_target = self.add_frozen("critic_target", self.critic)
        self.actor_target = self.add_frozen("actor_target", self.actor)
        self.optims["critic"] = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)

    def quantile_gap(self, b: Batch, taus: Tensor | None = None) -> Tensor:
        """Each critic's CQL(H) gap on its quantiles, averaged over batch and levels: [E].

        At P levels tau [B, P] per state (``taus``, default U(0, 1)): the gap between the
        importance-weighted log-sum-exp of Z(s, a_k; tau) over the sampled actions and
        Z(s, a_data; tau), at the same levels. One critic call scores all 3M + 1 actions.
        """
        c, (n, da) = self.config, b.actions.shape
        if taus is None:
            taus = torch.rand(n, c.n_penalty_quantiles, device=b.obs.device)
        sampled, log_density = self.penalty_actions(b)
        actions = torch.cat([sampled, b.actions.unsqueeze(1)], dim=1)  # [B, K + 1, da]
        k1, p = actions.shape[1], taus.shape[-1]
        z = self.critic(
            repeat(b.obs, k1).reshape(n * k1, -1),
            actions.reshape(n * k1, da),
            repeat(taus, k1).reshape(n * k1, p),
        )
        z = z.reshape(z.shape[0], n, k1, p)  # [E, B, K + 1, P]
        z_sampled = z[:, :, :-1].transpose(-1, -2)  # [E, B, P, K]
        gap = conservative_gap(z_sampled, log_density.unsqueeze(1), z[:, :, -1])  # [E, B, P]
        return gap.mean(dim=(-2, -1))

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Quantile Huber TD loss of each critic + the quantile penalty.

        y_j = r + not_done * gamma * (min_e Z'_e(s', a'; tau'_j) - alpha log pi(a'|s')),
        a' from the target actor. The TD loss is averaged over the N current levels (the
        code's ``quantile_regression_loss``; ``quantile_huber_loss`` sums them), which keeps
        cql_weight on the authors' scale.
        """
        c, n = self.config, b.obs.shape[0]
        with torch.no_grad():
            if no_bootstrap(b):  # y = r exactly; the target actor and critics are skipped
                y = terminal_targets(b.rewards, c.n_quantiles, c.tau_weighting)
            else:
                next_actions, next_log_pi = self.actor_target.sample(b.next_obs)
                taus_next = torch.rand(n, c.n_quantiles, device=b.obs.device)
                z_next = self.critic_target(b.next_obs, next_actions, taus_next).min(0).values
                if c.backup_entropy:
                    z_next = z_next - self.alpha() * next_log_pi.unsqueeze(-1)
                y = b.rewards + b.not_done * c.gamma * z_next  # [B, N]
        taus = torch.rand(n, c.n_quantiles, device=b.obs.device)
        z = self.critic(b.obs, b.actions, taus)  # [E, B, N]
        td = quantile_huber_loss(z, taus, y, tau_weighting=c.tau_weighting) / c.n_quantiles
        gap = self.quantile_gap(b)
        if c.cql_lagrange:
            penalty = self.alpha_prime() * (c.cql_weight * gap - c.cql_threshold)
        else:
            penalty = c.cql_weight * gap
        loss = td + penalty.sum()
        return loss, {
            "critic_loss": td.detach() / c.n_critics,  # per critic
            "cql_gap": gap.detach().mean(),
            "cql_penalty": penalty.detach().mean(),
            "z_mean": z.detach().mean(),
            "target_mean": y.mean(),
        }

    def lagrange_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Dual ascent on alpha': minimise -alpha' (w gap - threshold), averaged over the
        critics (codac.py alpha_prime_loss), on the gap of the just-updated critics."""
        c = self.config
        with torch.no_grad():
            gap = self.quantile_gap(b)
        alpha_prime = self.lagrange_value()
        loss = -(alpha_prime * (c.cql_weight * gap - c.cql_threshold)).mean()
        return loss, {"alpha_prime_loss": loss.detach(), "alpha_prime": alpha_prime.detach()}

    def action_value(self, obs: Tensor, actions: Tensor, u: Tensor | None = None) -> Tensor:
        """The actor's objective at (s, a): the distorted expectation of the return [B]."""
        if u is None:
            u = torch.rand(obs.shape[0], self.config.n_quantiles, device=obs.device)
        return distorted_value(self.critic, obs, actions, u.clamp(1e-6, 1 - 1e-6), self.distortion)

    def after_phases(self) -> None:
        polyak_update(self.critic_target, self.critic, self.config.tau)
        polyak_update(self.actor_target, self.actor, self.config.tau)


register("codac", CODACConfig, CODAC, "CODAC")
