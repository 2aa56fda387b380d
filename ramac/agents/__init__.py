"""Agents: one module per algorithm, all registered in :data:`AGENTS` on import.

``make_agent(name, obs_dim, act_dim, max_action, dataset, overrides)`` builds one from its
Config dataclass's defaults and the dataset's overrides in ``configs/algos/<name>.yaml``.
"""

from ramac.agents import bc, codac, cql, cvae_ql, diffusion_ql, fql, oraac, radac, rafmac, ravl  # noqa: F401
from ramac.agents.base import AGENTS, Agent, AgentEntry, make_agent, make_config, register

__all__ = ["AGENTS", "Agent", "AgentEntry", "make_agent", "make_config", "register"]
