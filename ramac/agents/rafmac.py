"""RAFMAC: RADAC with a flow-matching actor (Euler sampler) in place of the diffusion one.

What the paper describes, not what the public code does (ref: ramac-oraac-code.md §2,
§8.2). The released code trains a one-step student with the Q term and never acts with
it, so the evaluated Euler policy is plain flow-matching BC; here the risk gradient flows
through the K-step Euler rollout into the policy that is evaluated (as RADAC does through
its reverse chain). Also fixed: the actor term uses risk-distorted levels (the public
default uses uniform ones), targets bootstrap (its ``bandit=True`` never does), not_done
is not inverted, rewards are not clamped to [-1, 1], and the learning rates, alpha and
distortion are wired from the config. The EMA (its ``ema_v``, saved but unused there)
provides the target actions, as in RADAC.
"""

from __future__ import annotations

from dataclasses import dataclass

from ramac.agents.base import register
from ramac.agents.radac import RADAC, RADACConfig


@dataclass
class RAFMACConfig(RADACConfig):
    """RAFMAC hyperparameters (configs/rafmac.yaml of the RAMAC code; ref §2)."""

    lr_actor: float = 3e-4  # main.py never passes the yaml lrs: Adam 3e-4 for all (ref §2)
    lr_critic: float = 3e-4
    grad_norm: float = 0.6  # 0.6 on medium-expert, 0.8 on medium-replay (ref §2)
    n_steps: int = 10  # Euler steps K (ref §2 "flow_steps")
    actor_hidden: int = 128  # velocity field width h = 128 (ref §2 "Networks")
    # 16, not the public Sinusoidal(4): FlowActor scales t by 1000, which a 4-dim
    # embedding (frequencies 1 and 1e-4) would alias; 16 frequencies span it.
    time_dim: int = 16
    eta: float = 1000.0  # on the normalised risk term, so it is ~ +-1000 vs BC (ref §2)
    normalize_q: bool = True  # ref §2 "normalize_q_loss true"
    ema_start: int = 500  # ref §2 ``ema_v``: every 5 steps after step 500
    n_quantiles: int = 32  # 32 levels per call (ref §2)
    critic_hidden: int = 128  # state / action layers [h] (ref §2)
    embed_dim: int = 128  # embedding h (ref §2)
    n_cos: int = 32  # cosine dim 32 (ref §2)
    head_hidden: int = 128  # f layer [h] (ref §2)
    q_clip: float | None = None  # rafmac.yaml sets no q_clip (ref §4 "yaml defaults")


class RAFMAC(RADAC):
    """RADAC's losses and critics with a flow-matching actor."""

    actor_kind = "flow"


register("rafmac", RAFMACConfig, RAFMAC, "RAFMAC")
