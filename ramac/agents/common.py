"""Pieces shared by several agents: optimiser steps, schedules, critic updates, risk terms.

Written once here so that RADAC, RAFMAC and the ORAAC family run the same distributional
critic update, and the risk-neutral baselines the same twin-Q update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from ramac.data.dataset import Batch
from ramac.errors import UserError
from ramac.nets.common import polyak_update
from ramac.nets.diffusion import DiffusionActor
from ramac.nets.flow import FlowActor
from ramac.nets.iqn import IQNEnsemble, quantile_huber_loss
from ramac.nets.qnet import QEnsemble
from ramac.risk import make_distortion, sample_levels

Distortion = Callable[[Tensor], Tensor]

# True while losses run under ``torch.func.vmap`` over seeds (ramac.seed_parallel): there a
# loss may not look at tensor values from Python, and frozen parameters come in detached.
_SEED_BATCHED = False
# Whether no transition of the batch being trained on bootstraps, when the caller knows it
# without reading the batch (None: unknown, read it). See :func:`no_bootstrap`.
_ALL_TERMINAL: bool | None = None


@contextlib.contextmanager
def bootstrap_known(all_terminal: bool | None) -> Iterator[None]:
    """Say, for the losses evaluated inside, whether every transition of their batch is
    terminal (None: unknown). The sampler knows it from its row indices, on the host, so
    the update need not read the batch back from the device (:func:`no_bootstrap`)."""
    global _ALL_TERMINAL
    previous = _ALL_TERMINAL
    _ALL_TERMINAL = all_terminal
    try:
        yield
    finally:
        _ALL_TERMINAL = previous


@contextlib.contextmanager
def seed_batched(all_terminal: bool = False) -> Iterator[None]:
    """Mark the losses evaluated inside as vmapped over a seed dimension; ``all_terminal``
    says that no transition of the stacked batch bootstraps (see :func:`no_bootstrap`)."""
    global _SEED_BATCHED
    previous = _SEED_BATCHED
    _SEED_BATCHED = True
    try:
        with bootstrap_known(all_terminal):
            yield
    finally:
        _SEED_BATCHED = previous


def no_bootstrap(batch: Batch) -> bool:
    """Whether every transition of ``batch`` is terminal (the one-step bandit's are).

    Then the TD target is r + 0 * gamma * Z' = r exactly (Z' finite), so target actions and
    target critics need not be evaluated. What the caller knows (:func:`bootstrap_known`:
    the training loop's sampler, the seed stack) is used as it is; otherwise the batch is
    read, a host synchronisation (under vmap over seeds it cannot be read: False).
    """
    if _ALL_TERMINAL is not None:
        return _ALL_TERMINAL
    if _SEED_BATCHED:
        return False
    return not bool(batch.not_done.any())


def distortion_from(name: str, param: float | None) -> Distortion:
    """The distortion named in a config; a bad name or parameter is a UserError."""
    try:
        return make_distortion(name, param)
    except ValueError as exc:
        raise UserError(f"config risk: {exc}") from None


def target_actions(policy: Callable[[Tensor], Tensor], batch: Batch) -> Tensor:
    """Target-policy actions at s' (no grad), skipped when no transition bootstraps.

    With every transition terminal (the one-step bandit) the TD target is r + 0 * gamma * Z'
    and a' is never used, so zeros stand in and the sampler's cost is saved; the result
    is the same target (:func:`no_bootstrap`).
    """
    if no_bootstrap(batch):
        return torch.zeros_like(batch.actions)
    with torch.no_grad():
        return policy(batch.next_obs)


def make_actor(kind: str, obs_dim: int, act_dim: int, max_action: float, config) -> nn.Module:
    """The diffusion or flow actor a config describes (n_steps, actor_hidden, actor_layers,
    time_dim, actor_action_gain): the two share one interface, so an agent swaps them by name."""
    cls = {"diffusion": DiffusionActor, "flow": FlowActor}[kind]
    c = config
    return cls(
        obs_dim,
        act_dim,
        max_action,
        c.n_steps,
        c.actor_hidden,
        c.actor_layers,
        c.time_dim,
        action_gain=c.actor_action_gain,
    )


def make_iqn(obs_dim: int, act_dim: int, config) -> IQNEnsemble:
    """The IQN critic ensemble a config describes (n_critics, widths, activation)."""
    c = config
    return IQNEnsemble(
        obs_dim,
        act_dim,
        c.n_critics,
        c.critic_hidden,
        c.embed_dim,
        c.n_cos,
        c.head_hidden,
        activation=c.critic_activation,
    )


def eta_at(step: int, eta: float, warmup: int, ramp: int) -> float:
    """The actor's risk weight at ``step``: 0 before ``warmup``, then a linear ramp to ``eta``.

    As the RADAC code (docs/reference-code.md, "RADAC" step 5). With ``ramp`` = 0 (RADAC's
    effective default) eta jumps to full at ``step == warmup``; the public code reaches it
    one step later.
    """
    if step < warmup:
        return 0.0
    if ramp <= 0:
        return float(eta)
    return float(eta) * min(1.0, (step - warmup) / ramp)


@contextlib.contextmanager
def no_param_grads(module: nn.Module) -> Iterator[None]:
    """Evaluate ``module`` inside an actor loss without accumulating gradients in it.

    (Under vmap over seeds the parameters a loss does not train come in detached instead.)
    """
    if _SEED_BATCHED:
        yield
        return
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def clip_grad_norm_per_member(params: Iterable[Tensor], n_members: int, max_norm: float) -> None:
    """Clip each ensemble member's gradient to ``max_norm`` on its own.

    RADAC steps each critic separately with its own clip_grad_norm (docs/reference-code.md,
    "RADAC" step 3); our critics share [E, ...] tensors, so the norm is
    taken over each member's slice of every parameter. The members are the leading
    dimensions whose sizes multiply to ``n_members`` ([E, ...], or [K, E, ...] for K seeds
    trained together); the formula is ``nn.utils.clip_grad_norm_``'s.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    if any(not _leads_with(g.shape, n_members) for g in grads):
        raise ValueError("every parameter must have the ensemble size as its leading dimension")
    sq = sum(g.pow(2).reshape(n_members, -1).sum(dim=1) for g in grads)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.view(n_members, -1).mul_(scale.unsqueeze(1))


def _leads_with(shape: torch.Size, n: int) -> bool:
    """Whether the first few sizes of ``shape`` multiply to exactly ``n``."""
    product = 1
    for size in shape:
        product *= size
        if product == n:
            return True
    return n == 1


def grad_step(
    optimizer: torch.optim.Optimizer,
    loss: Tensor,
    params: Iterable[Tensor],
    grad_norm: float = 0.0,
    per_member: int = 0,
) -> None:
    """zero_grad, backward, optional gradient clipping (``grad_norm`` > 0), step.

    ``per_member`` > 0 clips each of that many ensemble members separately.
    """
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_norm > 0:
        if per_member:
            clip_grad_norm_per_member(params, per_member, grad_norm)
        else:
            nn.utils.clip_grad_norm_(params, grad_norm)
    optimizer.step()


@torch.no_grad()
def ema_tick(
    ema_model: nn.Module, model: nn.Module, step: int, start: int, every: int, decay: float
) -> None:
    """Every ``every`` steps: copy ``model`` into the EMA before ``start``, average after.

    So the average starts from the online weights at ``start``. Neither public code does
    this: Diffusion-QL's ``step_ema`` returns before ``step_start_ema``
    (agents/ql_diffusion.py of Zhendong-Wang/Diffusion-Policies-for-Offline-RL @ a37a009)
    and the RADAC code does the same, so both EMAs stay the *initial* actor until then and
    its random target actions leak into the critic for the first ``start`` steps. Copying
    the online weights is the fix list's choice (docs/fidelity.md); with ``start`` scaled
    to a short budget the two differ for a handful of updates only.
    """
    if step % every:
        return
    polyak_update(ema_model, model, 1.0 if step < start else 1.0 - decay)


def iqn_critic_loss(
    critic: IQNEnsemble,
    target: IQNEnsemble,
    batch: Batch,
    next_actions: Tensor,
    gamma: float,
    n_quantiles: int,
    q_clip: float | None = None,
    tau_weighting: str = "current",
) -> tuple[Tensor, dict[str, Tensor]]:
    """The distributional TD loss of an IQN ensemble and its log entries.

    y_j = clamp(r + not_done * gamma * min_e Z'_e(s', a', tau'_j), +-q_clip), tau' ~ U(0, 1)
    (the min taken per level), and the quantile Huber loss over all (tau_i, y_j) pairs at
    tau ~ U(0, 1) (docs/reference-code.md, "RADAC" steps 1-3, with the correct pairing:
    "Public-code issues", item 1).
    Its phase clips each critic's gradient on its own (``per_member``).
    ``tau_weighting="target"`` trains with THE PUBLIC RADAC CODE'S BUG instead (the Huber
    weight's level indexed by the target sample; ``ramac.nets.iqn.quantile_huber_loss``).
    """
    b = batch.obs.shape[0]
    device = batch.obs.device
    with torch.no_grad():
        taus_next = torch.rand(b, n_quantiles, device=device)  # drawn either way: same stream
        if no_bootstrap(batch):  # y = r exactly; the target critic's forward is skipped
            y = terminal_targets(batch.rewards, n_quantiles, tau_weighting)
        else:
            z_next = target(batch.next_obs, next_actions, taus_next).min(dim=0).values  # [B, N]
            y = batch.rewards + batch.not_done * gamma * z_next
        if q_clip is not None:
            y = y.clamp(-q_clip, q_clip)
    taus = torch.rand(b, n_quantiles, device=device)
    z = critic(batch.obs, batch.actions, taus)  # [E, B, N]
    loss = quantile_huber_loss(z, taus, y, tau_weighting=tau_weighting)
    return loss, {
        "critic_loss": loss.detach() / critic.n_critics,  # per critic, as RADAC logs it
        "z_mean": z.detach().mean(),
        "z_abs_mean": z.detach().abs().mean(),  # the critic's scale (issue 25: RAFMAC vs RADAC)
        "target_mean": y.mean(),
    }


def terminal_targets(rewards: Tensor, n_quantiles: int, tau_weighting: str) -> Tensor:
    """The TD target samples of terminal transitions: r itself, once per row [B, 1].

    All N target samples y_j = r of a terminal row are equal, so the quantile Huber loss's
    mean over them is its value at one sample: M = 1 gives the same loss as M = N, with
    N times fewer (i, j) pairs. The public code's bug (``tau_weighting="target"``) pairs
    level j with target j and needs all N of them.
    """
    return rewards.expand(-1, n_quantiles) if tau_weighting == "target" else rewards


def risk_quantiles(
    critic: IQNEnsemble, obs: Tensor, actions: Tensor, distortion: Distortion, n: int
) -> Tensor:
    """min_e Z_e(s, a, tau~) at n distorted levels tau~ = distortion(u) per row: [B, N].

    Averaging it estimates the distorted risk measure of the pessimistic critic
    (docs/reference-code.md, "RADAC" step 4 and "Risk distortions").
    """
    taus = sample_levels(n, distortion, (obs.shape[0],)).to(obs.device)
    return critic(obs, actions, taus).min(dim=0).values


def normalised_mean(values: Tensor, normalise: bool) -> Tensor:
    """mean(values), divided by the detached mean |values| when ``normalise``.

    The scale-free Q term of Diffusion-QL / RAFMAC / FQL (``normalize_q_loss``): the
    actor's trade-off with BC then no longer depends on the reward scale.
    """
    mean = values.mean()
    return mean / (values.abs().mean().detach() + 1e-8) if normalise else mean


def twin_q_loss(
    critic: QEnsemble,
    target: QEnsemble,
    batch: Batch,
    next_actions: Tensor,
    gamma: float,
    target_agg: str = "min",
) -> tuple[Tensor, dict[str, Tensor]]:
    """The TD loss of a Q ensemble, y = r + not_done * gamma * agg_e Q'_e(s', a'), and its logs.

    The loss is the MSE of each member summed over members (Diffusion-QL: mse(q1, y) +
    mse(q2, y)); ``target_agg`` is ``min`` (clipped double Q) or ``mean`` (FQL's default).
    """
    with torch.no_grad():
        if no_bootstrap(batch):  # y = r exactly; the target critics' forward is skipped
            y = batch.rewards.squeeze(-1)
        else:
            q_next = target(batch.next_obs, next_actions)  # [E, B]
            q_next = q_next.min(dim=0).values if target_agg == "min" else q_next.mean(dim=0)
            y = batch.rewards.squeeze(-1) + batch.not_done.squeeze(-1) * gamma * q_next
    q = critic(batch.obs, batch.actions)
    loss = (q - y).pow(2).mean(dim=-1).sum()
    return loss, {"critic_loss": loss.detach() / critic.n_members, "q_mean": q.detach().mean()}
