"""RAVL, reach-aware value learning (Sims, Lu, Teh, "The Edge-of-Reach Problem in Offline
Model-Based Reinforcement Learning", NeurIPS 2024, arXiv 2402.12527).

A dynamics ensemble is trained on the offline data (:mod:`ramac.models.dynamics`); every
``rollout_every`` updates the current policy is rolled out ``steps_k`` steps in it from
``rollout_batch`` dataset states into a FIFO model buffer; SAC with an EDAC Q-ensemble
(An et al. 2021: N critics, min over them in the targets, and a penalty on the cosine
similarity of the members' action-gradients weighted by eta) learns from batches whose
``dataset_ratio`` share is real data and the rest model data. The ensemble's pessimism is
what finds the "edge-of-reach" states that short rollouts bootstrap from and would
otherwise overvalue. Evaluation takes max_action * tanh(mean).

The reference for every number below: ``train_ravl_agent.py``, ``agent_training/agent.py``,
``agent_training/rollout_generation.py``, ``train_dynamics_model.py`` and
``dynamics_training/`` of anyasims/edge-of-reach @ 18b5085 (full hash
18b50853219676d120c6238f399664500eaa1f0c). Read, not copied. The repository holds only its
default config (halfcheetah-medium-v2's command line in its README); the paper's per-dataset
table was not available here, so every dataset keeps those defaults (configs/algos/ravl.yaml).

Differences, each deliberate: the model buffer is checkpointed, so a killed run resumes to
an uninterrupted run's numbers (the evaluation snapshots leave it out: it is ~0.2 GB at the
paper's sizes); the real rows of a batch are the first ``dataset_ratio`` of the batch the
training loop draws (uniformly at random, so as good as a fresh draw); the model's inputs
and targets are standardised (see ``ramac.models.dynamics``); one model per dataset is
shared by every run seed (``model_seed``). Each rollout counts the model states in the
data's hazard region (``model_hazard_rate`` in the training log; docs/ravl.md).

``ravl_cvar`` keeps the model and its rollouts but learns RADAC's IQN critic ensemble with the
quantile Huber loss, and its actor maximises CVaR_0.1 of the pessimistic critic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ramac.agents import common as shared
from ramac.agents.base import RESUME_ONLY, Agent, Phase, register
from ramac.agents.common import distortion_from, make_iqn, risk_quantiles
from ramac.agents.cql import LogScalar, SACActor
from ramac.data.dataset import Batch, OfflineDataset
from ramac.errors import UserError
from ramac.models.dynamics import DynamicsConfig, DynamicsEnsemble, ensure_dynamics
from ramac.models.hazard_view import hazard_share, hazard_spec_of
from ramac.nets.common import polyak_update
from ramac.nets.gaussian import TanhGaussianActor
from ramac.nets.iqn import EnsembleLinear, IQNEnsemble
from ramac.nets.qnet import QEnsemble

EDAC_LOG_STD = (-5.0, 2.0)  # the actor's log-std clip (agent_training/agent.py, "EDAC paper")
# The reference's per-layer L2 weights of the model's 4 hidden layers and its heads
# (dynamics_training/net.py @ 18b5085); more layers repeat the last hidden one.
MODEL_DECAYS, MODEL_HEAD_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5), 1e-4


@dataclass
class RAVLConfig:
    """RAVL's settings: train_ravl_agent.py (TrainConfig) and train_dynamics_model.py
    (EnsembleTrainConfig) of anyasims/edge-of-reach @ 18b5085, unless said otherwise."""

    batch_size: int = 256  # TrainConfig.batch_size
    lr_actor: float = 3e-4  # TrainConfig.actor_learning_rate
    lr_critic: float = 3e-4  # TrainConfig.critic_learning_rate
    lr_alpha: float = 3e-4  # TrainConfig.alpha_learning_rate
    gamma: float = 0.99  # TrainConfig.gamma
    tau: float = 5e-3  # TrainConfig.tau: Polyak rate of the target critics, every update
    actor_hidden: int = 256  # TrainConfig.hidden_dim; agent.py Actor: 3 x 256 ReLU
    actor_layers: int = 3  # agent.py Actor trunk
    critic_hidden: int = 256  # TrainConfig.hidden_dim; agent.py VectorizedCritic: 3 x 256 ReLU
    critic_layers: int = 3  # agent.py VectorizedCritic
    n_critics: int = 10  # TrainConfig.num_critics (README: the Q-ensemble size N)
    eta: float = 1.0  # TrainConfig.eta: weight of the EDAC diversity term
    alpha: float = 1.0  # entropy weight's start: agent.py log_alpha = 0
    entropy_tuning: bool = True  # TrainConfig.auto_alpha
    target_entropy: float | None = None  # None = -act_dim (agent.py Agent.__init__)
    backup_entropy: bool = True  # agent.py _critic_loss subtracts alpha log pi(a'|s')
    # model-based
    steps_k: int = 5  # TrainConfig.steps_k: model rollout length
    dataset_ratio: float = 0.05  # TrainConfig.dataset_ratio: real share of each batch
    rollout_every: int = 1000  # TrainConfig.updates_per_epoch: updates between rollouts
    rollout_batch: int = 50_000  # TrainConfig.rollouts_per_epoch: start states per rollout
    retain_epochs: int = 5  # TrainConfig.buffer_retain_epochs: rollouts the FIFO buffer keeps
    # rollout_generation.py samples r from the model's Gaussian (not its mean)
    sample_reward: bool = True
    model_members: int = 7  # EnsembleTrainConfig.num_models
    model_elites: int = 5  # EnsembleTrainConfig.num_elites
    model_hidden: int = 200  # EnsembleTrainConfig.hidden_dim
    model_layers: int = 4  # dynamics_training/net.py fc1..fc4
    model_lr: float = 1e-3  # EnsembleTrainConfig.model_lr
    model_batch_size: int = 256  # train_dynamics_model.py batch_size
    model_holdout: float = 0.2  # EnsembleTrainConfig.train_val_ratio
    model_max_epochs: int = 2000  # EnsembleTrainConfig.epochs
    model_min_epochs: int = 350  # EnsembleTrainConfig.min_epochs
    model_patience: int = 5  # train_dynamics_model.py: deque(maxlen=6), last 5 not improved
    # The model's seed, not the run's: the reference trains one model (train_dynamics_model.py
    # --seed) and every agent run loads it (train_ravl_agent.py --load_model_dir; its README,
    # "Training"), so all seeds and both RAVL variants of a dataset share one cached model.
    model_seed: int = 0


def dynamics_config(c: RAVLConfig) -> DynamicsConfig:
    """The dynamics ensemble's config from the agent's ``model_*`` fields."""
    hidden = [MODEL_DECAYS[min(i, len(MODEL_DECAYS) - 1)] for i in range(c.model_layers)]
    return DynamicsConfig(
        n_members=c.model_members,
        n_elites=c.model_elites,
        hidden=c.model_hidden,
        n_layers=c.model_layers,
        lr=c.model_lr,
        batch_size=c.model_batch_size,
        holdout_ratio=c.model_holdout,
        max_epochs=c.model_max_epochs,
        min_epochs=c.model_min_epochs,
        patience=c.model_patience,
        weight_decays=(*hidden, MODEL_HEAD_DECAY),
    )


# ----------------------------------------------------------------------------- networks


class EDACActor(TanhGaussianActor):
    """SAC's tanh-Gaussian actor with EDAC's log-std clip [-5, 2] and initialisation
    (hidden biases 0.1, output layer U(+-1e-3); agent.py ``Actor``)."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, hidden: int, layers: int):
        super().__init__(obs_dim, act_dim, max_action, hidden, layers)
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer in linears[:-1]:
                layer.bias.fill_(0.1)
            nn.init.uniform_(linears[-1].weight, -1e-3, 1e-3)
            nn.init.uniform_(linears[-1].bias, -1e-3, 1e-3)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(*EDAC_LOG_STD)


def edac_init_(critic: QEnsemble) -> None:
    """EDAC's critic initialisation (agent.py ``VectorizedCritic``): hidden biases 0.1, the
    output layer's weights and bias U(+-3e-3)."""
    layers = [m for m in critic.modules() if isinstance(m, EnsembleLinear)]
    with torch.no_grad():
        for layer in layers[:-1]:
            layer.bias.fill_(0.1)
        nn.init.uniform_(layers[-1].weight, -3e-3, 3e-3)
        nn.init.uniform_(layers[-1].bias, -3e-3, 3e-3)


def _member_linear(layer: EnsembleLinear, x: Tensor) -> Tensor:
    """An input layer applied to one input slice per member, x [E, B, in] -> [E, B, out]:
    so that each member's output depends on its own copy of the action."""
    return torch.baddbmm(layer.bias, x, layer.weight)


def q_per_member(critic: QEnsemble, obs: Tensor, actions: Tensor) -> Tensor:
    """Q_e(s, a_e) [E, B] for obs [B, ds] and one action batch per member, actions [E, B, da]."""
    first, rest = critic.net[0], critic.net[1:]
    x = torch.cat([obs.expand(actions.shape[0], -1, -1), actions], dim=-1)
    return rest(_member_linear(first, x)).squeeze(-1)


def iqn_per_member(critic: IQNEnsemble, obs: Tensor, actions: Tensor, taus: Tensor) -> Tensor:
    """Z_e(s, a_e; tau) [E, B, N] with one action batch per member, actions [E, B, da]."""
    h_s = critic.act(critic.state_layer(obs))
    h_a = critic.act(_member_linear(critic.action_layer, actions))
    features = critic.act(critic.joint_layer(torch.cat([h_s, h_a], dim=-1)))
    return critic.quantiles(features, taus)


def edac_diversity(grads: Tensor) -> Tensor:
    """EDAC's ensemble-diversity penalty from each member's action-gradient grads [E, B, da]:
    the batch mean of sum_{i != j} cos(g_i, g_j), over (E - 1) (An et al. 2021, eq. 5;
    agent.py ``_critic_diversity_loss``). 0 for a single member."""
    n = grads.shape[0]
    if n < 2:
        return grads.new_zeros(())
    unit = grads / (grads.norm(dim=-1, keepdim=True) + 1e-10)
    gram = torch.einsum("ebd,fbd->bef", unit, unit)  # [B, E, E]
    off_diagonal = gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=-1)
    return off_diagonal.mean() / (n - 1)


# ----------------------------------------------------------------------------- the buffer


class ModelBuffer:
    """A FIFO ring of model transitions on the agent's device (the reference's DataBuffer
    of size rollouts_per_epoch x steps_k x buffer_retain_epochs)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device) -> None:
        widths = {"obs": obs_dim, "actions": act_dim, "rewards": 1, "next_obs": obs_dim}
        self.data = {k: torch.zeros(capacity, w, device=device) for k, w in widths.items()}
        self.data["not_done"] = torch.zeros(capacity, 1, device=device)
        self.capacity, self.size, self.pointer = capacity, 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: Tensor, actions: Tensor, rewards: Tensor, next_obs: Tensor, done: Tensor):
        """Append rows (the oldest are overwritten once full)."""
        n = obs.shape[0]
        idx = (self.pointer + torch.arange(n, device=obs.device)) % self.capacity
        values = (obs, actions, rewards.reshape(-1, 1), next_obs, 1.0 - done.float().reshape(-1, 1))
        for key, value in zip(self.data, values, strict=True):
            self.data[key][idx] = value
        self.pointer = (self.pointer + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict:
        """The filled rows (the ring fills from row 0), its size and write position."""
        rows = {k: v[: self.size].cpu().clone() for k, v in self.data.items()}
        return {"rows": rows, "size": self.size, "pointer": self.pointer}

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise UserError(f"model buffer: {size} saved rows exceed its capacity {self.capacity}")
        for key, rows in state["rows"].items():
            self.data[key][:size] = rows.to(self.data[key].device)
        self.size, self.pointer = size, int(state["pointer"])

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """n rows uniformly with replacement."""
        device = self.data["obs"].device
        idx = torch.randint(self.size, (n,), generator=generator, device=device)
        return Batch(
            *(self.data[k][idx] for k in ("obs", "actions", "rewards", "next_obs", "not_done"))
        )


def mix(real: Batch, model: Batch) -> Batch:
    """The real rows, then the model rows, as one batch."""
    return Batch(*(torch.cat([a, b]) for a, b in zip(real, model, strict=True)))


# ----------------------------------------------------------------------------- the agent


class RAVL(SACActor, Agent):
    """SAC + EDAC Q-ensemble trained on real data mixed with model rollouts.

    ``attach(dataset, seed)`` gives it the data (its model, start states and real share)
    before the first update; ``act`` and checkpoints need none.
    """

    seed_stackable = False  # model rollouts are data-dependent: no torch.func.vmap over seeds

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: RAVLConfig):
        super().__init__(obs_dim, act_dim, max_action, config)
        c = config
        self.actor = self.add_net(
            "actor", EDACActor(obs_dim, act_dim, max_action, c.actor_hidden, c.actor_layers)
        )
        self.critic = self.add_net("critic", self.make_critic())
        self.critic_target = self.add_frozen("critic_target", self.critic)
        self.optims["actor"] = torch.optim.Adam(self.actor.parameters(), lr=c.lr_actor)
        self.optims["critic"] = torch.optim.Adam(self.critic.parameters(), lr=c.lr_critic)
        self.target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
        if c.entropy_tuning:
            self.log_alpha = self.add_net("log_alpha", LogScalar(math.log(c.alpha)))
            self.optims["alpha"] = torch.optim.Adam(self.log_alpha.parameters(), lr=c.lr_alpha)
        self.dynamics: DynamicsEnsemble | None = None
        self.hazard = None  # the data's hazard spec, once attached
        self.buffer: ModelBuffer | None = None
        self.rng: torch.Generator | None = None

    def make_critic(self) -> nn.Module:
        c = self.config
        critic = QEnsemble(
            self.obs_dim, self.act_dim, c.n_critics, c.critic_hidden, c.critic_layers, nn.ReLU
        )
        edac_init_(critic)
        return critic

    # -- the data ------------------------------------------------------------------------
    def attach(
        self,
        dataset: OfflineDataset,
        seed: int,
        dynamics: DynamicsEnsemble | None = None,
        cache_dir=None,
    ) -> None:
        """Give the agent its dataset: the dynamics model (``dynamics``, else the one of
        ``model_seed``, trained or loaded by :func:`ensure_dynamics`), the rollouts' start
        states, and a generator seeded by the run's ``seed`` for the rollouts and the model
        rows of each batch."""
        c = self.config
        if dataset.obs_dim != self.obs_dim or dataset.act_dim != self.act_dim:
            raise UserError(
                f"dataset {dataset.provenance.id}: dims ({dataset.obs_dim}, {dataset.act_dim}) "
                f"differ from the agent's ({self.obs_dim}, {self.act_dim})"
            )
        if dynamics is None:
            dynamics = self.dynamics_for(dataset, cache_dir)
        self.dynamics = dynamics.to(self.device).eval()
        self.hazard = hazard_spec_of(dataset)  # to count the rollouts' hazard states
        self.start_states = torch.as_tensor(
            np.asarray(dataset.observations, dtype=np.float32), device=self.device
        )
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        capacity = c.rollout_batch * c.steps_k * c.retain_epochs
        self.buffer = ModelBuffer(capacity, self.obs_dim, self.act_dim, self.device)

    def dynamics_for(self, dataset: OfflineDataset, cache_dir=None) -> DynamicsEnsemble:
        """The dataset's dynamics model of this config's ``model_seed`` (the cached one, else
        trained and cached): what ``attach`` gives the agent, and what evaluation checks."""
        c = self.config
        model = ensure_dynamics(dataset, c.model_seed, dynamics_config(c), cache_dir, self.device)
        return model.eval()

    @torch.no_grad()
    def rollout(self) -> dict[str, float]:
        """``steps_k`` policy steps in the model from ``rollout_batch`` dataset states into
        the buffer; a rollout stops at a predicted terminal (rollout_generation.py)."""
        c = self.config
        n = c.rollout_batch
        if n <= len(self.start_states):  # distinct start states, as the reference's sample
            idx = torch.randperm(len(self.start_states), generator=self.rng, device=self.device)[:n]
        else:
            idx = torch.randint(
                len(self.start_states), (n,), generator=self.rng, device=self.device
            )
        obs, added, reward_sum, risky = self.start_states[idx], 0, 0.0, 0.0
        for _ in range(c.steps_k):
            actions, _ = self.actor.sample(obs, generator=self.rng)
            next_obs, rewards, done = self.dynamics.step(obs, actions, self.rng, c.sample_reward)
            self.buffer.add(obs, actions, rewards, next_obs, done)
            if self.hazard is not None:
                risky += hazard_share(self.hazard, next_obs) * len(obs)
            added, reward_sum = added + len(obs), reward_sum + float(rewards.sum())
            obs = next_obs[~done]
            if not len(obs):
                break
        stats = {"rollout_length": added / n, "model_reward": reward_sum / max(added, 1)}
        if self.hazard is not None:  # the share of model steps that end in the hazard region
            stats["model_hazard_rate"] = risky / max(added, 1)
        return stats

    def mixed_batch(self, real: Batch) -> Batch:
        """int(dataset_ratio x B) real rows, the rest from the model buffer (B = the real
        batch's size; train_ravl_agent.py's n_d4rl_samples)."""
        n = real.obs.shape[0]
        n_real = int(self.config.dataset_ratio * n)
        model = self.buffer.sample(n - n_real, self.rng)
        return mix(Batch(*(t[:n_real] for t in real)), model)

    def train_step(self, batch: Batch, all_terminal: bool | None = None) -> None:
        """Roll out every ``rollout_every`` updates (and whenever the buffer is empty), then
        one update on the mixed batch (whose terminals are partly the model's: unknown).

        The rollout is data-dependent (a rollout stops where the model predicts terminals,
        and its statistics are read back), so a rollout step synchronises with the host;
        the updates in between do not."""
        if self.buffer is None:
            raise UserError(
                f"{type(self).__name__}: attach(dataset, seed) must give the agent its data "
                "before it can update"
            )
        if self.step % self.config.rollout_every == 0 or not len(self.buffer):
            self.carry.update(self.rollout())
        super().train_step(self.mixed_batch(self.batch_to_device(batch)))

    # -- the losses ----------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        """Temperature, actor, critic: agent.py ``Agent.update``'s order; no clipping."""
        phases = [Phase("alpha", self.alpha_loss)] if self.config.entropy_tuning else []
        return [*phases, Phase("actor", self.actor_loss), Phase("critic", self.critic_loss)]

    def action_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """What the actor maximises: min_e Q_e(s, a), [B]."""
        return self.critic(obs, actions).min(dim=0).values

    def next_values(self, b: Batch) -> tuple[Tensor, Tensor]:
        """Target actions' log pi [B] and a' ~ pi(. | s') [B, da] (no grad)."""
        with torch.no_grad():
            next_actions, next_log_pi = self.actor.sample(b.next_obs)
        return next_actions, next_log_pi

    def member_values(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Each member's value at its own action copy, actions [E, B, da] -> [E, B]."""
        return q_per_member(self.critic, obs, actions)

    def diversity(self, b: Batch) -> Tensor:
        """EDAC's penalty at the batch's (s, a), differentiable in the critic."""
        n = self.config.n_critics
        actions = b.actions.detach().unsqueeze(0).expand(n, -1, -1).clone().requires_grad_(True)
        values = self.member_values(b.obs, actions)
        (grads,) = torch.autograd.grad(values.sum(), actions, create_graph=True)
        return edac_diversity(grads)

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Each member's TD MSE, summed, + eta x the diversity penalty (agent.py)."""
        c = self.config
        next_actions, next_log_pi = self.next_values(b)
        with torch.no_grad():
            q_next = self.critic_target(b.next_obs, next_actions).min(dim=0).values
            if c.backup_entropy:
                q_next = q_next - self.alpha() * next_log_pi
            y = b.rewards.squeeze(-1) + b.not_done.squeeze(-1) * c.gamma * q_next
        q = self.critic(b.obs, b.actions)
        td = (q - y).pow(2).mean(dim=-1).sum()
        div = self.diversity(b) if c.eta > 0 else td.new_zeros(())
        loss = td + c.eta * div
        return loss, {
            "critic_loss": td.detach() / c.n_critics,
            "diversity": div.detach(),
            "q_mean": q.detach().mean(),
            "q_std": q.detach().std(dim=0).mean(),
        }

    def after_phases(self) -> None:
        polyak_update(self.critic_target, self.critic, self.config.tau)

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.actor.deterministic(obs)  # max_action tanh(mean) (agent.py Actor.act, eval)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The base snapshot plus the rollout generator's state and, for resuming only, the
        model buffer (so that a resumed run repeats an uninterrupted one exactly)."""
        state = super().state_dict()
        if self.rng is not None:
            state["rollout_rng"] = self.rng.get_state()
        if self.buffer is not None:
            state[RESUME_ONLY] = {"model_buffer": self.buffer.state_dict()}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a snapshot; one without the buffer (kept for evaluation) leaves it."""
        super().load_state_dict(state)
        if self.rng is not None and "rollout_rng" in state:
            self.rng.set_state(state["rollout_rng"])
        if self.buffer is not None and RESUME_ONLY in state:
            self.buffer.load_state_dict(state[RESUME_ONLY]["model_buffer"])


register("ravl", RAVLConfig, RAVL, "RAVL")


@dataclass
class RAVLCVaRConfig(RAVLConfig):
    """RAVL with RADAC's distributional critic and a CVaR actor; what differs from RAVL.

    The IQN sizes are RADACConfig's defaults (ramac/agents/radac.py, from the RAMAC code);
    the ensemble stays RAVL's 10 members and keeps the EDAC penalty, here on each member's
    mean quantile at levels tau ~ U(0, 1).
    """

    n_quantiles: int = 32  # N levels for tau, tau' and tau~ (RADACConfig)
    embed_dim: int = 128  # RADACConfig.embed_dim
    n_cos: int = 64  # RADACConfig.n_cos
    head_hidden: int = 256  # RADACConfig.head_hidden
    critic_activation: str = "relu"  # RADACConfig.critic_activation
    tau_weighting: str = "current"  # the correct quantile Huber loss (RADACConfig)
    risk: str = "cvar"  # the actor maximises CVaR ...
    risk_param: float | None = 0.1  # ... at alpha 0.1 (RADAC's)
    # A risk-aware critic must see the rewards' spread, so rewards are sampled from the
    # model's Gaussian, never its mean (as RAVL's reference rollouts do).
    sample_reward: bool = True


class RAVLCVaR(RAVL):
    """RAVL's rollouts and actor-critic loop with an IQN ensemble and a CVaR actor."""

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: RAVLCVaRConfig):
        super().__init__(obs_dim, act_dim, max_action, config)
        self.distortion = distortion_from(config.risk, config.risk_param)

    def make_critic(self) -> nn.Module:
        return make_iqn(self.obs_dim, self.act_dim, self.config)

    def action_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """mean over tau~ = beta(u) of min_e Z_e(s, a, tau~): the CVaR of the pessimistic
        critic (RADAC's risk term), [B]."""
        c = self.config
        return risk_quantiles(self.critic, obs, actions, self.distortion, c.n_quantiles).mean(-1)

    def member_values(self, obs: Tensor, actions: Tensor) -> Tensor:
        taus = torch.rand(obs.shape[0], self.config.n_quantiles, device=obs.device)
        return iqn_per_member(self.critic, obs, actions, taus).mean(dim=-1)

    def critic_loss(self, b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Quantile Huber TD loss against r + gamma (min_e Z'_e(s', a', tau') - alpha log pi'),
        + eta x the diversity penalty."""
        c = self.config
        n = b.obs.shape[0]
        next_actions, next_log_pi = self.next_values(b)
        with torch.no_grad():
            taus_next = torch.rand(n, c.n_quantiles, device=b.obs.device)
            z_next = self.critic_target(b.next_obs, next_actions, taus_next).min(dim=0).values
            if c.backup_entropy:
                z_next = z_next - self.alpha() * next_log_pi.unsqueeze(-1)
            y = b.rewards + b.not_done * c.gamma * z_next  # [B, N]
        taus = torch.rand(n, c.n_quantiles, device=b.obs.device)
        z = self.critic(b.obs, b.actions, taus)
        # Through ramac.agents.common (= ramac.nets.iqn's), the name the interface tests watch.
        td = shared.quantile_huber_loss(z, taus, y, tau_weighting=c.tau_weighting)
        div = self.diversity(b) if c.eta > 0 else td.new_zeros(())
        return td + c.eta * div, {
            "critic_loss": td.detach() / c.n_critics,
            "diversity": div.detach(),
            "z_mean": z.detach().mean(),
        }


# Every per-dataset value is RAVL's (configs/algos/ravl.yaml); the critic and actor differ.
register("ravl_cvar", RAVLCVaRConfig, RAVLCVaR, "RAVL (CVaR)", yaml_of="ravl")
