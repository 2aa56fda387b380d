"""CQL, conservative Q-learning (Kumar, Zhou, Tucker, Levine, NeurIPS 2020, arXiv 2006.04779).

SAC (tanh-Gaussian actor, twin Q critics with Polyak targets, automatic entropy tuning)
whose critics also minimise the CQL(H) penalty
    w * E_s[ T log sum_k exp((Q(s, a_k) - log mu(a_k)) / T) - Q(s, a_data) ],
the log-sum-exp taken over M uniform actions, M actions of pi(. | s) and M of pi(. | s'),
each weighted by its sampling density mu (importance sampling; paper eq. 4 and app. F).
The weight w is fixed, or (the Lagrange variant) w * alpha' with alpha' >= 0 raised by dual
ascent while the gap exceeds a threshold. Evaluation takes the deterministic action
max_action * tanh(mean), as SAC-based methods (and CORL's CQL) are evaluated.

Reference implementation for every number below: CORL, ``algorithms/offline/cql.py`` and
``configs/offline/cql/{halfcheetah,hopper,walker2d}/{medium_expert,medium_replay}_v2.yaml`` of
tinkoff-ai/CORL @ 6afec90 (its locomotion settings are the same on all six datasets).
Read, not copied. States are standardised as CORL does (``normalize: true`` in every
locomotion config): (s - mean) / (std + 1e-3) with the dataset's per-feature mean and
population std (its ``compute_mean_std(dataset["observations"], eps=1e-3)``), for the
losses' s and s' and for the evaluated policy; the statistics are fitted once from the data
(``fit_to``, called by ``ramac.train.build_agent``) and stored in the agent's state, so a
checkpoint carries them to evaluation. Differences, each deliberate: the policy's log-std
offset is the constant -1
(CORL: a learned scalar starting at -1, next to a learned multiplier starting at 1); random
and policy actions are weighted by their exact densities on [-max_action, max_action]
(CORL uses the max_action = 1 densities, identical on D4RL); the entropy temperature is
stepped after the actor (standard SAC order; CORL steps it in the same update from the
pre-update log-probabilities).

``ConservativeSAC`` holds what CQL and CODAC (``ramac.agents.codac``) share: the actor, the
temperature, the Lagrange multiplier and the sampled penalty actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ramac.agents.base import Agent, Phase, register
from ramac.agents.common import no_bootstrap, no_param_grads
from ramac.data.dataset import Batch
from ramac.nets.common import Standardizer, polyak_update
from ramac.nets.gaussian import TanhGaussianActor
from ramac.nets.iqn import EnsembleLinear
from ramac.nets.qnet import QEnsemble

ALPHA_PRIME_MAX = 1e6  # clamp of the Lagrange multiplier (CORL, and the CQL authors' code)
STATE_STD_EPS = 1e-3  # added to the states' std (CORL: compute_mean_std(..., eps=1e-3))


@dataclass
class CQLConfig:
    """CQL hyperparameters: CORL's D4RL locomotion settings (tinkoff-ai/CORL @ 6afec90)."""

    batch_size: int = 256  # CORL batch_size
    lr_actor: float = 3e-5  # CORL policy_lr
    lr_critic: float = 3e-4  # CORL qf_lr (both critics)
    lr_alpha: float = 3e-5  # the temperature's Adam (CORL: policy_lr)
    lr_alpha_prime: float = 3e-4  # the Lagrange multiplier's Adam (CORL: qf_lr)
    gamma: float = 0.99  # CORL discount
    tau: float = 0.005  # Polyak rate of the target critics, every step (CORL)
    actor_hidden: int = 256  # CORL TanhGaussianPolicy: 3 x 256 ReLU
    actor_layers: int = 3  # its 3 hidden layers
    log_std_offset: float = -1.0  # added to the actor's log-std (CORL's initial offset)
    critic_hidden: int = 256  # CORL FullyConnectedQFunction: 3 x 256 ReLU per critic
    critic_layers: int = 3  # CORL q_n_hidden_layers
    orthogonal_init: bool = True  # critics: orthogonal init, gain sqrt 2, last 1e-2 (CORL)
    alpha: float = 1.0  # entropy weight: fixed, or its start when tuned (CORL: exp(0) x 1)
    entropy_tuning: bool = True  # CORL use_automatic_entropy_tuning
    target_entropy: float | None = None  # tuned entropy target; None = -act_dim (CORL)
    backup_entropy: bool = False  # subtract alpha log pi(a'|s') in the TD target (CORL: off)
    cql_weight: float = 10.0  # w, CORL cql_alpha on the six locomotion datasets
    cql_n_actions: int = 10  # M actions per source (uniform, pi(s), pi(s')) (CORL)
    cql_temp: float = 1.0  # log-sum-exp temperature T (CORL cql_temp)
    cql_lagrange: bool = False  # tune alpha' by dual ascent (CORL's locomotion runs: off)
    # Lagrange only: the gap alpha' holds the penalty to, in alpha' w (gap - threshold).
    # CORL runs locomotion without it; 5.0 is its maze2d Lagrange setting at the same w = 10.
    cql_threshold: float = 5.0
    # Standardise states with the dataset's mean and std (CORL normalize: true, every
    # locomotion config; module docstring)
    normalize_states: bool = True


def conservative_gap(
    values: Tensor, log_density: Tensor, data: Tensor, temperature: float = 1.0
) -> Tensor:
    """T log sum_k exp((values_k - log_density_k) / T) - data: the CQL(H) gap, unreduced.

    values [..., K] are Q (or quantiles) at K sampled actions, log_density [..., K] the log
    of the density each was drawn from (broadcast against values), data [...] the value of
    the dataset action. Subtracting the log-density is the importance weighting that turns
    the sum over samples into an estimate of log int exp Q(s, a) da (CQL app. F).
    """
    weighted = (values - log_density) / temperature
    return temperature * torch.logsumexp(weighted, dim=-1) - data


class LogScalar(nn.Module):
    """One learned scalar, the log of a positive weight (SAC's temperature, CQL's alpha').

    A 0-d parameter, so a seed stack holds it as [K] and each seed steps its own.
    """

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self) -> Tensor:
        return self.value


def orthogonal_init_(
    critic: QEnsemble, gain: float = math.sqrt(2.0), last_gain: float = 1e-2
) -> None:
    """CORL's critic initialisation, per ensemble member: orthogonal weights (``gain`` for
    hidden layers, ``last_gain`` for the output layer), zero biases."""
    layers = [m for m in critic.modules() if isinstance(m, EnsembleLinear)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            for e in range(layer.n_members):
                nn.init.orthogonal_(
                    layer.weight[e], gain=last_gain if i == len(layers) - 1 else gain
                )
            layer.bias.zero_()


class SACActor:
    """SAC's policy and temperature losses (Haarnoja et al. 2018, eqs. 12 and 18) for an agent
    with ``actor`` (``sample``), ``critic``, ``action_value(obs, actions)`` (what the actor
    maximises), ``config`` (``entropy_tuning``, ``alpha``), ``target_entropy`` and, when
    tuned, ``log_alpha`` (a :class:`LogScalar`)."""

    def actor_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """SAC's policy loss E[alpha log pi(a|s) - value(s, a)], a ~ pi(. | s) reparameterised."""
        actions, log_pi = self.actor.sample(b.obs)
        with no_param_grads(self.critic):
            value = self.action_value(b.obs, actions)
        loss = (self.alpha() * log_pi - value).mean()
        return loss, {"actor_loss": loss.detach(), "log_pi": log_pi.detach().mean()}

    def alpha(self) -> Tensor | float:
        """The entropy weight, not differentiated (a constant when not tuned)."""
        if self.config.entropy_tuning:
            return self.log_alpha().detach().exp()
        return self.config.alpha

    def alpha_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """SAC's temperature loss -log alpha * (log pi + target entropy), on fresh samples."""
        with torch.no_grad():
            _, log_pi = self.actor.sample(b.obs)
        log_alpha = self.log_alpha()
        loss = -(log_alpha * (log_pi + self.target_entropy)).mean()
        return loss, {"alpha_loss": loss.detach(), "alpha": log_alpha.detach().exp()}


class ConservativeSAC(SACActor, Agent):
    """SAC with a conservative critic penalty: the actor, temperature and Lagrange parts.

    An update is: critic step (TD + penalty), [Lagrange multiplier step], actor step,
    [temperature step], then the target networks (``after_phases``). Subclasses give the
    critic, its losses, the actor's value of an action and the target updates.
    """

    log_alpha_prime_init = 1.0  # CORL's Scalar(1.0); CODAC starts at 0

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        self.actor = self.add_net(
            "actor",
            TanhGaussianActor(
                obs_dim, act_dim, max_action, c.actor_hidden, c.actor_layers, c.log_std_offset
            ),
        )
        self.optims["actor"] = torch.optim.Adam(self.actor.parameters(), lr=c.lr_actor)
        self.target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
        if c.entropy_tuning:
            self.log_alpha = self.add_net("log_alpha", LogScalar(math.log(c.alpha)))
            self.optims["alpha"] = torch.optim.Adam(self.log_alpha.parameters(), lr=c.lr_alpha)
        if c.cql_lagrange:
            self.log_alpha_prime = self.add_net(
                "log_alpha_prime", LogScalar(self.log_alpha_prime_init)
            )
            self.optims["alpha_prime"] = torch.optim.Adam(
                self.log_alpha_prime.parameters(), lr=c.lr_alpha_prime
            )

    # -- the update ----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        """Critic, [Lagrange multiplier], actor, [temperature]; no gradient clipping (as the
        reference codes)."""
        c = self.config
        phases = [Phase("critic", self.critic_loss)]
        if c.cql_lagrange:
            phases.append(Phase("alpha_prime", self.lagrange_loss))
        phases.append(Phase("actor", self.actor_loss))
        if c.entropy_tuning:
            phases.append(Phase("alpha", self.alpha_loss))
        return phases

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def lagrange_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def action_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """What the actor maximises at (s, a): [B] (min of the twin Q; CODAC: of their CVaR)."""
        raise NotImplementedError

    # -- shared pieces -------------------------------------------------------------------
    def alpha_prime(self) -> Tensor:
        """The Lagrange multiplier exp(log alpha'), clamped to [0, 1e6], not differentiated."""
        return self.log_alpha_prime().detach().exp().clamp(0.0, ALPHA_PRIME_MAX)

    def lagrange_value(self) -> Tensor:
        """exp(log alpha') clamped, differentiable in log alpha' (the dual step's factor)."""
        return self.log_alpha_prime().exp().clamp(0.0, ALPHA_PRIME_MAX)

    def penalty_actions(self, b: Batch) -> tuple[Tensor, Tensor]:
        """The penalty's sampled actions [B, 3M, da] and the log-density of each [B, 3M].

        M uniform actions on [-max_action, max_action]^da (density (2 max_action)^-da),
        then M from pi(. | s') and M from pi(. | s), all detached (CQL app. F; CORL's
        ``_q_loss``). The s' actions are scored at s, as the reference codes do.
        """
        c, (n, da) = self.config, b.actions.shape
        m = c.cql_n_actions
        with torch.no_grad():
            uniform = (torch.rand(n, m, da, device=b.obs.device) * 2.0 - 1.0) * self.max_action
            uniform_log_density = torch.full(
                (n, m), -da * math.log(2.0 * self.max_action), device=b.obs.device
            )
            next_actions, next_log_pi = self.actor.sample(repeat(b.next_obs, m))
            actions, log_pi = self.actor.sample(repeat(b.obs, m))
        return (
            torch.cat([uniform, next_actions, actions], dim=1),
            torch.cat([uniform_log_density, next_log_pi, log_pi], dim=1),
        )

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        # Deterministic: max_action * tanh(mean) (CORL's eval ``act``; CODAC's eval action).
        return self.actor.deterministic(obs)


def repeat(x: Tensor, m: int) -> Tensor:
    """x [B, d] repeated m times along a new axis: [B, m, d] (a view)."""
    return x.unsqueeze(1).expand(-1, m, -1)


class CQL(ConservativeSAC):
    """SAC + the CQL(H) penalty on twin Q critics."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: CQLConfig) -> None:
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        critic = QEnsemble(obs_dim, act_dim, 2, c.critic_hidden, c.critic_layers, nn.ReLU)
        if c.orthogonal_init:
            orthogonal_init_(critic)
        self.critic = self.add_net("critic", critic)
        self.critic_target = self.add_frozen("critic_target", self.critic)
        self.optims["critic"] = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)
        # The states' statistics: frozen (never trained), saved and loaded with the agent;
        # the identity until ``fit_to``.
        self.state_norm = (
            self.add_frozen("state_norm", Standardizer(obs_dim)) if c.normalize_states else None
        )

    def fit_to(self, dataset) -> None:
        """Fit the state statistics to ``dataset``'s observations (CORL: before training,
        from the data; module docstring). A no-op without ``normalize_states``."""
        if self.state_norm is not None:
            self.state_norm.fit(dataset.observations, STATE_STD_EPS)

    def observe(self, batch: Batch) -> Batch:
        """The batch with s and s' standardised (CORL normalises both in its buffer)."""
        if self.state_norm is None:
            return batch
        return batch._replace(
            obs=self.state_norm(batch.obs), next_obs=self.state_norm(batch.next_obs)
        )

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        # Raw states in, standardised as in training (CORL wraps its eval env the same way).
        if self.state_norm is not None:
            obs = self.state_norm(obs)
        return super()._policy(obs, generator)

    def cql_gap(self, b: Batch, q_data: Tensor) -> Tensor:
        """Each critic's CQL(H) gap averaged over the batch: [E]. q_data: Q(s, a_data) [E, B]."""
        actions, log_density = self.penalty_actions(b)
        q_sampled = self.critic(repeat(b.obs, actions.shape[1]), actions)  # [E, B, 3M]
        gap = conservative_gap(q_sampled, log_density, q_data, self.config.cql_temp)
        return gap.mean(dim=-1)

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Twin-Q TD loss (sum of the two MSEs, CORL's qf1_loss + qf2_loss) + the penalty."""
        c = self.config
        with torch.no_grad():
            if no_bootstrap(b):  # y = r exactly; the target critics' forward is skipped
                y = b.rewards.squeeze(-1)
            else:
                next_actions, next_log_pi = self.actor.sample(b.next_obs)
                q_next = self.critic_target(b.next_obs, next_actions).min(dim=0).values  # [B]
                if c.backup_entropy:
                    q_next = q_next - self.alpha() * next_log_pi
                y = b.rewards.squeeze(-1) + b.not_done.squeeze(-1) * c.gamma * q_next
        q = self.critic(b.obs, b.actions)  # [E, B]
        td = (q - y).pow(2).mean(dim=-1).sum()
        gap = self.cql_gap(b, q)  # [E]
        if c.cql_lagrange:
            penalty = self.alpha_prime() * c.cql_weight * (gap - c.cql_threshold)
        else:
            penalty = c.cql_weight * gap
        loss = td + penalty.sum()
        return loss, {
            "critic_loss": td.detach() / 2,  # per critic
            "cql_gap": gap.detach().mean(),
            "cql_penalty": penalty.detach().mean(),
            "q_mean": q.detach().mean(),
            "target_mean": y.mean(),
        }

    def lagrange_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Dual ascent on alpha': minimise -alpha' w (gap - threshold), averaged over the
        critics (CORL's alpha_prime_loss), on the gap of the just-updated critics."""
        c = self.config
        with torch.no_grad():
            gap = self.cql_gap(b, self.critic(b.obs, b.actions))
        alpha_prime = self.lagrange_value()
        loss = -(alpha_prime * c.cql_weight * (gap - c.cql_threshold)).mean()
        return loss, {"alpha_prime_loss": loss.detach(), "alpha_prime": alpha_prime.detach()}

    def action_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        return self.critic(obs, actions).min(dim=0).values

    def after_phases(self) -> None:
        polyak_update(self.critic_target, self.critic, self.config.tau)


register("cql", CQLConfig, CQL, "CQL")
