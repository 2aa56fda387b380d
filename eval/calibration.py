"""Tail calibration: does a distributional critic know the tail of the returns it predicts?

For an agent with an IQN critic (RADAC, RAFMAC, the ORAAC family, CODAC: ``agent.critic`` an
:class:`~ramac.nets.iqn.IQNEnsemble`, or CODAC's
:class:`~ramac.nets.quantile_mlp.QuantileMlpEnsemble`; ``agent.act(obs, generator)`` its
evaluated policy),
the critic's predicted return distribution at a state is set against the returns the same
policy gets from that state. Three numbers per state, and per run their mean over states:
the gap in mean, the gap in CVaR_alpha (alpha = 0.1), and a calibration curve (predicted vs
empirical quantile at a grid of levels, with the coverage P(return <= predicted quantile)).

Conventions, stated once here and in every record:

- Gap = predicted - empirical: positive means the critic is optimistic (for the CVaR: it
  thinks the tail is better than it is, the dangerous direction for a risk-averse actor).
- The predicted quantiles are the ensemble's minimum per level, min_e Z_e(s, a, tau), as
  RADAC's / RAFMAC's / ORAAC's actor and every TD target use them (CODAC's actor takes the
  minimum after averaging over its levels instead; the difference is second order).
- A predicted distribution is held as equal-weight atoms: its quantile function at the
  midpoints (m + 1/2) / M of M equal cells (:func:`midpoint_levels`), one row per action of
  the policy (the return from s mixes the policy's actions: the rows are pooled). Its
  CVaR_alpha is the exact CVaR of the atoms (the mean over the worst alpha share, a
  fractional weight on the boundary atom), which for one action and alpha M whole is the
  midpoint rule for (1 / alpha) * integral_0^alpha Z(tau) dtau. Atoms are sorted before
  quantiles and CVaR are read, so a critic whose quantiles cross is read as the monotone
  rearrangement of its quantile function. ``actor_cvar`` is the mean over the actions of
  each action's CVaR: what the actor maximises (it differs from the pooled one when the
  policy's actions differ in value).
- Empirical CVaR: ``ramac.risk.cvar_estimate(..., rule="interpolated")``, the exact CVaR of
  the sample (the same rule as the atoms'); quantiles: the Hazen rule (sorted value k at level
  (k - 1/2) / n, linear in between), so atoms at midpoints read back exactly.

MuJoCo: "many rollouts from one start state" = the evaluation env reset with the episode's
recorded seed (``eval.suite_run.episode_seeds``; the simulator is deterministic after the
reset), each rollout with its own hazard coins and policy noise. Returns are discounted
with the agent's gamma and truncated at the horizon, which drops the tail beyond it: the
critic predicts the untruncated return, so every record carries gamma^H (the weight of what
is dropped: 0.99^200 = 0.13, 0.99^1000 = 4e-5) and a short horizon biases the comparison.

The bandit (``ramac.envs.bandit``): the reward distribution of every action is known in
closed form (a Gaussian, or on the ring a Gaussian with an atom at the penalty), and the
critic learns exactly that (one-step episodes), so its quantiles and CVaR are compared with
the truth without sampling (:func:`bandit_critic_calibration`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import norm

from ramac.envs.bandit import BanditSpec
from ramac.envs.hazards import HazardSpec
from ramac.envs.mujoco import make_env
from ramac.errors import UserError
from ramac.risk import cvar_estimate

ALPHA = 0.1
LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
# The bandit's ring quantile function jumps at level penalty_prob (0.1: from the penalty -10
# to the ring's Gaussian), where a level is ill-posed (and float32 rounding picks a side):
# its curve uses levels either side of the jump instead.
BANDIT_LEVELS = (0.02, 0.05, 0.08, 0.15, 0.25, 0.5, 0.75, 0.9, 0.95)
QUANTILE_RULE = "hazen"  # numpy's name for sorted value k at level (k - 1/2) / n
CVAR_RULE = "interpolated"  # ramac.risk: the exact CVaR of a sample
ENSEMBLE_RULE = "min over the ensemble per level"
GAP_SIGN = "predicted - empirical"
# Hazard-coin seeds of the calibration rollouts: rollout r of a start state uses coin seed
# COIN_SEED_BASE + r (its coins: default_rng([COIN_SEED_BASE + r, env seed]), see
# ramac.envs.hazards.HazardWrapper), never the evaluation episode's own stream.
COIN_SEED_BASE = 5_000_000

Policy = Callable[[np.ndarray], np.ndarray]
SimState = tuple[np.ndarray, np.ndarray]  # a MuJoCo state: (qpos, qvel)


# ----------------------------------------------------------------------------- pure functions


def midpoint_levels(n: int, upper: float = 1.0) -> np.ndarray:
    """The midpoints (m + 1/2) * upper / n, m < n, of n equal cells of (0, upper)."""
    if n < 1:
        raise UserError(f"calibration: the number of levels must be >= 1, got {n}")
    if not 0.0 < upper <= 1.0:
        raise UserError(f"calibration: the upper level must lie in (0, 1], got {upper}")
    return (np.arange(n) + 0.5) * (upper / n)


def _levels(levels: Sequence[float]) -> np.ndarray:
    x = np.asarray(levels, dtype=np.float64).ravel()
    if x.size == 0 or not np.all((x > 0) & (x < 1)):
        raise UserError(f"calibration: levels must lie in (0, 1), got {list(levels)}")
    return x


def _finite(values: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise UserError(f"calibration: {what} is empty")
    if not np.all(np.isfinite(x)):
        raise UserError(f"calibration: {what} has NaN or infinite values")
    return x


def sample_quantiles(sample: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Quantiles of an equal-weight sample (or atoms) at ``levels``, by the Hazen rule."""
    x = _finite(sample, "the sample").ravel()
    return np.quantile(x, _levels(levels), method=QUANTILE_RULE)


def sample_cvar(sample: np.ndarray, alpha: float = ALPHA) -> float:
    """The exact CVaR_alpha (lower tail) of an equal-weight sample or set of atoms."""
    try:
        return cvar_estimate(_finite(sample, "the sample").ravel(), alpha, CVAR_RULE)
    except ValueError as exc:
        raise UserError(f"calibration: {exc}") from None


def calibration(
    predicted: np.ndarray,
    returns: np.ndarray,
    levels: Sequence[float] = LEVELS,
    alpha: float = ALPHA,
) -> tuple[dict[str, float], pd.DataFrame]:
    """A critic's predicted return distribution against a sample of returns, at one state.

    ``predicted``: the predicted quantile function at midpoint levels (see the module
    docstring), [M] for one action or [K, M] for K actions of the policy (pooled);
    ``returns``: the Monte-Carlo returns (any shape). Returns the summary (predicted and
    empirical mean and CVaR_alpha, their gaps = predicted - empirical, ``actor_cvar``) and
    the calibration curve: one row per level with the predicted and empirical quantiles,
    their gap, and the coverage (share of returns <= the predicted quantile; = the level
    for a calibrated critic).
    """
    atoms = _finite(predicted, "the predicted quantiles")
    atoms = atoms.reshape(1, -1) if atoms.ndim < 2 else atoms.reshape(-1, atoms.shape[-1])
    sample = _finite(returns, "the returns").ravel()
    levels = _levels(levels)
    pooled = atoms.ravel()
    summary = {
        "predicted_mean": float(pooled.mean()),
        "empirical_mean": float(sample.mean()),
        "predicted_cvar": sample_cvar(pooled, alpha),
        "actor_cvar": float(np.mean([sample_cvar(row, alpha) for row in atoms])),
        "empirical_cvar": sample_cvar(sample, alpha),
    }
    summary["mean_gap"] = summary["predicted_mean"] - summary["empirical_mean"]
    summary["cvar_gap"] = summary["predicted_cvar"] - summary["empirical_cvar"]
    predicted_q = sample_quantiles(pooled, levels)
    empirical_q = sample_quantiles(sample, levels)
    curve = pd.DataFrame(
        {
            "level": levels,
            "predicted": predicted_q,
            "empirical": empirical_q,
            "gap": predicted_q - empirical_q,
            "coverage": (sample[None, :] <= predicted_q[:, None]).mean(axis=1),
        }
    )
    return {**summary, "alpha": float(alpha), "n_returns": int(sample.size)}, curve


def summarise_calibration(states: pd.DataFrame, curve: pd.DataFrame) -> dict[str, Any]:
    """One run's calibration: the per-state gaps averaged over its start states.

    ``states``/``curve``: the tables of :func:`calibrate_agent` (or :func:`calibration`'s
    outputs stacked with an ``env_seed`` column). Mean signed gaps, mean absolute gaps, and
    the calibration curve averaged over states (one predicted / empirical / coverage value
    per level).
    """
    if states.empty or curve.empty:
        raise UserError("calibration: no states to summarise")
    by_level = curve.groupby("level")[["predicted", "empirical", "gap", "coverage"]].mean()
    return {
        "n_states": int(len(states)),
        "mean_gap": float(states["mean_gap"].mean()),
        "cvar_gap": float(states["cvar_gap"].mean()),
        "abs_mean_gap": float(states["mean_gap"].abs().mean()),
        "abs_cvar_gap": float(states["cvar_gap"].abs().mean()),
        "predicted_cvar": float(states["predicted_cvar"].mean()),
        "empirical_cvar": float(states["empirical_cvar"].mean()),
        "predicted_mean": float(states["predicted_mean"].mean()),
        "empirical_mean": float(states["empirical_mean"].mean()),
        "gap_sign": GAP_SIGN,
        "quantiles": ENSEMBLE_RULE,
        "curve": by_level.reset_index().to_dict(orient="list"),
    }


# ------------------------------------------------------------------------------ the critic


def _device(critic: Any) -> torch.device:
    """The device of a critic's parameters (CPU for a stand-in without any)."""
    params = list(critic.parameters()) if hasattr(critic, "parameters") else []
    return params[0].device if params else torch.device("cpu")


@torch.no_grad()
def critic_atoms(
    critic: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    obs: np.ndarray | torch.Tensor,
    actions: np.ndarray | torch.Tensor,
    n_levels: int = 1000,
) -> np.ndarray:
    """The critic's predicted quantile function at ``n_levels`` midpoints, min over members.

    ``critic(obs [B, ds], actions [B, da], taus [N]) -> [E, B, N]`` (an IQN or a QuantileMlp
    ensemble);
    ``obs`` [S, ds] and ``actions`` [S, K, da] (K actions per state, or [S, da] for one).
    Returns [S, K, n_levels]: min_e Z_e(s, a_k, tau_m) at tau_m = (m + 1/2) / n_levels.
    """
    obs_t = torch.as_tensor(np.asarray(obs) if not isinstance(obs, torch.Tensor) else obs)
    act_t = torch.as_tensor(
        np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions
    )
    if act_t.dim() == 2:
        act_t = act_t.unsqueeze(1)
    if obs_t.dim() != 2 or act_t.dim() != 3 or act_t.shape[0] != obs_t.shape[0]:
        raise UserError(
            f"calibration: obs must be [S, ds] and actions [S, K, da]; got "
            f"{tuple(obs_t.shape)} and {tuple(act_t.shape)}"
        )
    device = _device(critic)
    n_states, k, _ = act_t.shape
    taus = torch.as_tensor(midpoint_levels(n_levels), dtype=torch.float32, device=device)
    out = []
    for s in range(n_states):  # one state at a time: [E, K, n_levels, hidden] stays small
        o = obs_t[s : s + 1].to(device=device, dtype=torch.float32).expand(k, -1)
        z = critic(o, act_t[s].to(device=device, dtype=torch.float32), taus)
        out.append(z.min(dim=0).values.cpu().numpy())
    return np.stack(out).astype(np.float64)


def policy_atoms(
    agent: Any,
    obs: np.ndarray,
    n_actions: int = 32,
    n_levels: int = 1000,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """:func:`critic_atoms` of ``agent.critic`` at ``n_actions`` actions of ``agent.act`` per
    state (drawn with ``generator``): [S, n_actions, n_levels]."""
    if n_actions < 1:
        raise UserError(f"calibration: n_actions must be >= 1, got {n_actions}")
    obs = np.asarray(obs, dtype=np.float32)
    repeated = np.repeat(obs, n_actions, axis=0)
    actions = agent.act(repeated, generator).cpu().numpy()
    actions = actions.reshape(len(obs), n_actions, -1)
    return critic_atoms(agent.critic, obs, actions, n_levels)


# ---------------------------------------------------------------------------- Monte Carlo


def mc_returns(
    policy: Policy,
    task: str,
    hazard: HazardSpec | None,
    env_seed: int,
    n_rollouts: int,
    gamma: float,
    horizon: int,
    env_id: str | None = None,
    coin_seed: int = COIN_SEED_BASE,
    start_state: SimState | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Discounted returns of ``n_rollouts`` rollouts of ``policy`` from one start state.

    Every rollout's env is reset with ``env_seed`` (the same start state: the MuJoCo
    simulator is deterministic after the reset) and then, with ``start_state`` (a visited
    state's (qpos, qvel), :func:`visited_state`), put in that state; rollout r has hazard
    coin seed ``coin_seed + r``; the rollouts are stepped together and ``policy`` gets the
    running ones' observations as one batch (its own noise makes them differ). Return =
    sum_t gamma^t r_t (hazard penalties included) up to termination or ``horizon`` steps.
    Returns the start observation and one row per rollout: rollout, return, length,
    risky_steps, terminated.
    """
    if n_rollouts < 1 or horizon < 1:
        raise UserError(
            f"calibration: n_rollouts and horizon must be >= 1, got {n_rollouts}, {horizon}"
        )
    if not 0.0 < gamma <= 1.0:
        raise UserError(f"calibration: gamma must lie in (0, 1], got {gamma}")
    envs = [make_env(task, hazard, coin_seed + r, horizon, env_id) for r in range(n_rollouts)]
    obs = np.stack([_start(env, int(env_seed), start_state) for env in envs])
    if not np.all(obs == obs[0]):  # a stochastic reset would break "one start state"
        raise UserError(f"calibration: resets with seed {env_seed} gave different states")
    start = obs[0].copy()
    returns = np.zeros(n_rollouts)
    lengths = np.zeros(n_rollouts, dtype=int)
    risky = np.zeros(n_rollouts, dtype=int)
    terminated = np.zeros(n_rollouts, dtype=bool)
    done = np.zeros(n_rollouts, dtype=bool)
    running = np.arange(n_rollouts)
    while running.size:
        actions = np.asarray(policy(obs[running]), dtype=np.float32)
        for i, action in zip(running, actions, strict=True):
            obs[i], reward, terminated[i], truncated, info = envs[i].step(action)
            returns[i] += gamma ** lengths[i] * reward
            lengths[i] += 1
            risky[i] += bool(info.get("risky", False))
            done[i] = terminated[i] or truncated
        running = running[~done[running]]
    for env in envs:
        env.close()
    rollouts = pd.DataFrame(
        {
            "rollout": np.arange(n_rollouts),
            "return": returns,
            "length": lengths,
            "risky_steps": risky,
            "terminated": terminated,
        }
    )
    return start, rollouts


def _start(env: Any, env_seed: int, state: SimState | None) -> np.ndarray:
    """Reset ``env`` with ``env_seed``; with ``state``, then set the simulator to it."""
    obs = env.reset(seed=env_seed)[0]
    if state is None:
        return obs
    env.unwrapped.set_state(*state)
    return env.unwrapped._get_obs()


def visited_state(
    policy: Policy,
    task: str,
    hazard: HazardSpec | None,
    env_seed: int,
    steps: int,
    env_id: str | None = None,
    coin_seed: int = COIN_SEED_BASE,
) -> SimState | None:
    """The simulator state (qpos, qvel) after ``steps`` steps of ``policy`` from the reset
    with ``env_seed`` (hazard coin seed ``coin_seed``); None when the episode ends before."""
    env = make_env(task, hazard, coin_seed, steps + 1, env_id)
    try:
        obs = env.reset(seed=int(env_seed))[0]
        for _ in range(steps):
            action = np.asarray(policy(obs[None]), dtype=np.float32)[0]
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                return None
        data = env.unwrapped.data
        return data.qpos.copy(), data.qvel.copy()
    finally:
        env.close()


def calibrate_agent(
    agent: Any,
    task: str,
    hazard: HazardSpec | None,
    env_seeds: Sequence[int],
    *,
    horizon: int,
    n_rollouts: int = 100,
    gamma: float | None = None,
    levels: Sequence[float] = LEVELS,
    alpha: float = ALPHA,
    n_actions: int = 32,
    n_levels: int = 1000,
    seed: int = 0,
    env_id: str | None = None,
    visited_at: Sequence[int] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tail calibration of ``agent`` at the start states of ``env_seeds`` (the evaluation
    episodes' recorded seeds) and at the states the policy visits ``visited_at`` steps
    after each: one row per state, and the calibration curve per state.

    Per state: ``n_rollouts`` Monte-Carlo returns (:func:`mc_returns`, discounted with
    ``gamma``, default the agent's ``config.gamma``, truncated ``horizon`` steps after the
    state), against the critic's atoms at ``n_actions`` actions of the policy
    (:func:`policy_atoms`). A visited state is where one episode of the policy is after
    t steps (:func:`visited_state`; skipped when that episode ends before). Policy noise
    comes from one torch generator seeded with ``seed``; the critic's actions from another
    (``seed + 1``). Every row records its state (``start_step``: 0 for the reset, t for a
    visited state), the rules (gap sign, ensemble, CVaR rule) and gamma^horizon, the
    discount weight of the truncated tail.
    """
    gamma = float(agent.config.gamma if gamma is None else gamma)
    rollout_gen = agent.generator(int(seed))
    critic_gen = agent.generator(int(seed) + 1)

    def policy(obs: np.ndarray) -> np.ndarray:
        return agent.act(obs, rollout_gen).cpu().numpy()

    rows, curves = [], []
    for env_seed in env_seeds:
        for step in (0, *visited_at):
            state = None
            if step:
                state = visited_state(policy, task, hazard, int(env_seed), step, env_id)
                if state is None:
                    continue
            start, rollouts = mc_returns(
                policy, task, hazard, int(env_seed), n_rollouts, gamma, horizon, env_id,
                start_state=state,
            )  # fmt: skip
            atoms = policy_atoms(agent, start[None], n_actions, n_levels, critic_gen)[0]
            summary, curve = calibration(atoms, rollouts["return"].to_numpy(), levels, alpha)
            rows.append(
                {"env_seed": int(env_seed), "start_step": int(step)}
                | summary
                | _rollout_record(rollouts, horizon, gamma, n_actions, n_levels)
            )
            curves.append(curve.assign(env_seed=int(env_seed), start_step=int(step)))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def _rollout_record(
    rollouts: pd.DataFrame, horizon: int, gamma: float, n_actions: int, n_levels: int
) -> dict[str, Any]:
    """What a calibration row records beside its numbers: the rollouts and the rules."""
    return {
        "horizon": int(horizon),
        "gamma": gamma,
        "discount_at_horizon": gamma**horizon,
        "mean_length": float(rollouts["length"].mean()),
        "risky_rate": float(rollouts["risky_steps"].sum() / rollouts["length"].sum()),
        "n_actions": int(n_actions),
        "n_levels": int(n_levels),
        "gap_sign": GAP_SIGN,
        "quantiles": ENSEMBLE_RULE,
        "cvar_rule": CVAR_RULE,
    }


# --------------------------------------------------------------------------------- bandit


def _check_mixture(std: float, atom_prob: float) -> None:
    if not std > 0:
        raise UserError(f"calibration: the Gaussian's std must be > 0, got {std}")
    if not 0.0 <= atom_prob < 1.0:
        raise UserError(f"calibration: the atom's probability must lie in [0, 1), got {atom_prob}")


def gaussian_atom_quantile(
    levels: np.ndarray | Sequence[float],
    mean: float,
    std: float,
    atom: float = 0.0,
    atom_prob: float = 0.0,
) -> np.ndarray:
    """Exact quantile function of ``atom`` w.p. ``atom_prob``, else N(mean, std^2).

    With G = (1 - q) Phi((atom - mean) / std) the mass below the atom: Q(p) = mean + std
    Phi^-1(p / (1 - q)) for p <= G, the atom for G < p <= G + q, and mean + std
    Phi^-1((p - q) / (1 - q)) above (q = 0: the Gaussian's own quantile function).
    """
    _check_mixture(std, atom_prob)
    p = np.asarray(levels, dtype=np.float64)
    q = atom_prob
    below = (1.0 - q) * norm.cdf((atom - mean) / std)
    low = mean + std * norm.ppf(np.clip(p / (1.0 - q), 0.0, 1.0))
    high = mean + std * norm.ppf(np.clip((p - q) / (1.0 - q), 0.0, 1.0))
    return np.where(p <= below, low, np.where(p <= below + q, atom, high))


def _gaussian_part(mean: float, std: float, v0: float, v1: float) -> float:
    """integral_{v0}^{v1} (mean + std Phi^-1(v)) dv = mean (v1 - v0) - std (phi(Phi^-1(v1))
    - phi(Phi^-1(v0)))."""
    if v1 <= v0:
        return 0.0
    return mean * (v1 - v0) - std * (norm.pdf(norm.ppf(v1)) - norm.pdf(norm.ppf(v0)))


def gaussian_atom_cvar(
    alpha: float, mean: float, std: float, atom: float = 0.0, atom_prob: float = 0.0
) -> float:
    """Exact CVaR_alpha = (1 / alpha) integral_0^alpha Q(p) dp of the distribution of
    :func:`gaussian_atom_quantile`, in closed form (the Gaussian parts by
    integral Phi^-1 = -phi(Phi^-1))."""
    _check_mixture(std, atom_prob)
    if not 0.0 < alpha <= 1.0:
        raise UserError(f"calibration: alpha must lie in (0, 1], got {alpha}")
    q = atom_prob
    below = (1.0 - q) * norm.cdf((atom - mean) / std)
    total = (1.0 - q) * _gaussian_part(mean, std, 0.0, min(alpha, below) / (1.0 - q))
    total += atom * max(0.0, min(alpha, below + q) - below)
    if alpha > below + q:
        v0, v1 = below / (1.0 - q), (alpha - q) / (1.0 - q)
        total += (1.0 - q) * _gaussian_part(mean, std, v0, v1)
    return float(total / alpha)


def _zone_params(actions: np.ndarray, spec: BanditSpec) -> list[tuple[float, float, float, float]]:
    """(mean, std, atom, atom_prob) of each action's reward (``ramac.envs.bandit``)."""
    actions = np.asarray(actions, dtype=np.float64).reshape(-1, 2)
    in_centre = np.linalg.norm(actions, axis=1) <= spec.zone_radius
    centre = (spec.centre_reward_mean, spec.centre_reward_std, 0.0, 0.0)
    ring = (spec.ring_reward_mean, spec.ring_reward_std, spec.penalty, spec.penalty_prob)
    return [centre if c else ring for c in in_centre]


def bandit_reward_quantile(
    actions: np.ndarray, levels: Sequence[float], spec: BanditSpec
) -> np.ndarray:
    """The true quantile function of the reward of each action [n, 2] at ``levels``: [n, L].

    Centre zone (||a|| <= zone_radius): N(centre mean, centre std^2); beyond it, the
    penalty w.p. penalty_prob, else N(ring mean, ring std^2) (``sample_rewards``).
    """
    levels = _levels(levels)
    return np.stack(
        [gaussian_atom_quantile(levels, *p) for p in _zone_params(actions, spec)]
    ).astype(np.float64)


def bandit_reward_cvar(actions: np.ndarray, spec: BanditSpec, alpha: float = ALPHA) -> np.ndarray:
    """The true CVaR_alpha of the reward of each action [n, 2]: [n]."""
    return np.array([gaussian_atom_cvar(alpha, *p) for p in _zone_params(actions, spec)])


def bandit_reward_mean(actions: np.ndarray, spec: BanditSpec) -> np.ndarray:
    """The true mean reward of each action [n, 2]: [n]."""
    return np.array([(1 - q) * m + q * a for m, _, a, q in _zone_params(actions, spec)])


def bandit_points(spec: BanditSpec, n_angles: int = 8) -> dict[str, np.ndarray]:
    """Where the bandit's critic is checked: the centre (0, 0), and ``n_angles`` points on
    the ring (radius ``ring_radius``, evenly spaced angles from 0)."""
    if n_angles < 1:
        raise UserError(f"calibration: n_angles must be >= 1, got {n_angles}")
    angles = 2 * np.pi * np.arange(n_angles) / n_angles
    ring = spec.ring_radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return {"centre": np.zeros((1, 2)), "ring": ring}


def _relative(gap: float, truth: float) -> float:
    """|gap| / |truth| (NaN when the truth is 0)."""
    return float(abs(gap) / abs(truth)) if truth != 0 else float("nan")


@torch.no_grad()
def bandit_critic_calibration(
    critic: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    spec: BanditSpec,
    levels: Sequence[float] = BANDIT_LEVELS,
    alpha: float = ALPHA,
    n_levels: int = 1000,
    n_angles: int = 8,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A bandit critic's predicted reward distribution at the centre and on the ring against
    the closed form (no sampling on either side).

    The critic (``obs [B, 1]`` zeros: the bandit's one dummy state) is evaluated at the
    points of :func:`bandit_points`: its quantiles at ``levels`` (min over the ensemble,
    read directly, no rearrangement), its CVaR_alpha as the mean of min_e Z_e over
    ``n_levels`` midpoints of (0, alpha) (the actor's average over tau ~ U(0, alpha)), its
    mean over ``n_levels`` midpoints of (0, 1). Returns one row per point (zone, angle,
    predicted / true mean and CVaR, gaps = predicted - true, relative CVaR gap
    |gap| / |true|) and the curve (zone, angle, level, predicted, true, gap).
    """
    levels_arr = _levels(levels)
    rows, curves = [], []
    obs_dim, device = getattr(critic, "obs_dim", 1), _device(critic)
    for zone, points in bandit_points(spec, n_angles).items():
        obs = torch.zeros(len(points), obs_dim, device=device)
        act = torch.as_tensor(points, dtype=torch.float32, device=device)

        def z(taus: np.ndarray, obs=obs, act=act) -> np.ndarray:
            t = torch.as_tensor(taus, dtype=torch.float32, device=device)
            return critic(obs, act, t).min(dim=0).values.double().cpu().numpy()

        predicted_q = z(levels_arr)  # [P, L]
        predicted_cvar = z(midpoint_levels(n_levels, alpha)).mean(axis=1)
        predicted_mean = z(midpoint_levels(n_levels)).mean(axis=1)
        true_q = bandit_reward_quantile(points, levels_arr, spec)
        true_cvar = bandit_reward_cvar(points, spec, alpha)
        true_mean = bandit_reward_mean(points, spec)
        angles = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
        for i in range(len(points)):
            rows.append(
                {
                    "zone": zone,
                    "angle_deg": float(angles[i]),
                    "predicted_mean": float(predicted_mean[i]),
                    "true_mean": float(true_mean[i]),
                    "mean_gap": float(predicted_mean[i] - true_mean[i]),
                    "predicted_cvar": float(predicted_cvar[i]),
                    "true_cvar": float(true_cvar[i]),
                    "cvar_gap": float(predicted_cvar[i] - true_cvar[i]),
                    "cvar_rel_gap": _relative(predicted_cvar[i] - true_cvar[i], true_cvar[i]),
                    "alpha": float(alpha),
                    "gap_sign": "predicted - true",
                    "quantiles": ENSEMBLE_RULE,
                }
            )
            curves.append(
                pd.DataFrame(
                    {
                        "zone": zone,
                        "angle_deg": float(angles[i]),
                        "level": levels_arr,
                        "predicted": predicted_q[i],
                        "true": true_q[i],
                        "gap": predicted_q[i] - true_q[i],
                    }
                )
            )
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
