"""What every agent looks like, and the registry that builds one from its name and YAML.

An agent owns its networks (``nets``: trained), their frozen copies (``frozen``: target
critics, EMA actors, never stepped by an optimiser) and its optimisers (``optims``), so
saving, loading and the "every parameter learns" test are written once here.

An update is a list of :class:`Phase` s (a loss and the optimiser that minimises it) and
then ``after_phases`` (EMA, target networks). Written that way, the same losses train one
agent here and K seeds at once in :mod:`ramac.seed_parallel`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

import ramac.config
from ramac.agents.common import bootstrap_known, grad_step
from ramac.config import algo_values, build, refuse_retired, scale_schedules
from ramac.config_checks import check_config
from ramac.data.dataset import Batch
from ramac.errors import UserError


class Phase(NamedTuple):
    """One optimiser step of an update.

    ``loss(batch)`` returns the loss to minimise and the values to log (0-d tensors); it
    must not read tensors back into Python (no ``.item()``, no data-dependent ``if``), so
    that it also runs under ``torch.func.vmap`` over seeds. The gradient of the optimiser's
    parameters is clipped to ``grad_norm`` (> 0), per ensemble member when ``per_member``.
    """

    optimizer: str
    loss: Callable[[Batch], tuple[Tensor, dict[str, Tensor]]]
    grad_norm: float = 0.0
    per_member: int = 0


def phase_key(phase: Phase) -> tuple:
    """What identifies a phase's loss across updates (``phases()`` builds new ones each
    step): its optimiser and loss function, for the compiled losses' cache."""
    return phase.optimizer, getattr(phase.loss, "__func__", phase.loss)


def optimizer_params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """Every parameter an optimiser steps, in its order."""
    return [p for group in optimizer.param_groups for p in group["params"]]


class Agent:
    """Base class: device handling, the phased update, batched ``act``, checkpointing.

    Subclasses fill ``nets``, ``frozen`` and ``optims`` in ``__init__`` and implement
    ``phases``, ``_policy`` and, when they keep averaged or target networks,
    ``after_phases``. ``step`` counts completed updates (schedules read it).
    """

    def __init__(self, obs_dim: int, act_dim: int, max_action: float, config: Any) -> None:
        check_config(config)  # also when built directly, not through make_config
        self.obs_dim, self.act_dim, self.max_action = obs_dim, act_dim, float(max_action)
        self.config = config
        # Built on the CPU (weights drawn from the CPU stream, the same on every device),
        # then moved by ``to``: the device is the builder's (make_agent), never the config's.
        self.device = torch.device("cpu")
        self.step = 0
        self.nets: dict[str, nn.Module] = {}
        self.frozen: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        # Log values (0-d tensors, or floats) of the last step that computed each: values
        # computed only every few steps repeat in between. Read back only by ``logged``.
        self.carry: dict[str, Tensor | float] = {}
        # torch.compile'd phase losses (``compile_losses``), by :func:`phase_key`
        self.compiled: dict[tuple, Callable] | None = None

    # -- to implement -------------------------------------------------------------------
    def phases(self) -> list[Phase]:
        """This step's optimiser steps, in order (the list may depend on ``self.step``)."""
        raise NotImplementedError

    def critic_then_actor(self, grad_norm: float, per_member: int = 0) -> list[Phase]:
        """The usual update: a TD step of ``critic_loss``, then an ``actor_loss`` step on the
        updated critic, both clipped to ``grad_norm`` (the critic's per member if asked)."""
        return [
            Phase("critic", self.critic_loss, grad_norm, per_member),
            Phase("actor", self.actor_loss, grad_norm),
        ]

    def after_phases(self) -> None:
        """What follows the optimiser steps: EMA and target-network updates (none here)."""

    def _policy(self, obs: Tensor, generator: torch.Generator | None) -> Tensor:
        """The evaluated policy's actions for obs [B, ds] (called without grad)."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step of every network; returns finite floats for the log.

        Values a step does not compute (an actor updated every few steps) repeat their
        last value, so every row of the log has every column. Reading them is a host
        synchronisation: the training loop calls :meth:`train_step` and reads
        :meth:`logged` at its logging steps only.
        """
        self.train_step(batch)
        return self.logged()

    def train_step(self, batch: Batch, all_terminal: bool | None = None) -> None:
        """One gradient step of every network, without reading any tensor back into Python
        (no host synchronisation on a GPU): the log values stay tensors in ``carry``.

        ``all_terminal``: whether no transition of ``batch`` bootstraps, when the caller
        knows it without looking at the tensors (the sampler does, from its indices);
        None: the losses read the batch (``ramac.agents.common.no_bootstrap``).
        """
        b = self.observe(self.batch_to_device(batch))
        self.schedule_learning_rates()
        logs: dict[str, Tensor] = {}
        with bootstrap_known(all_terminal):
            for phase in self.phases():
                loss, values = self.phase_loss(phase)(b)
                optimizer = self.optims[phase.optimizer]
                params = optimizer_params(optimizer)
                grad_step(optimizer, loss, params, phase.grad_norm, phase.per_member)
                logs.update(values)
        self.after_phases()
        self.step += 1
        self.carry.update({name: value.detach() for name, value in logs.items()})

    def logged(self) -> dict[str, float]:
        """The log values as floats: a host synchronisation (logging steps only)."""
        return {name: float(value) for name, value in self.carry.items()}

    def compile_losses(self) -> None:
        """Run every phase's loss (forward and backward) through ``torch.compile`` from now
        on (``--compile``; CUDA graphs too on a GPU: ``mode="reduce-overhead"``). The
        optimiser steps stay eager. The losses' random draws stay torch's eager stream
        (inductor's ``fallback_random``), so compiling changes rounding, not the noise."""
        self.compiled = {}

    def phase_loss(self, phase: Phase) -> Callable:
        """``phase.loss``, compiled when :meth:`compile_losses` was called."""
        if self.compiled is None:
            return phase.loss
        key = phase_key(phase)
        if key not in self.compiled:
            self.compiled[key] = compile_fn(phase.loss, self.device)
        return self.compiled[key]

    def schedule_learning_rates(self) -> None:
        """Cosine decay of every optimiser's lr over ``lr_decay_steps`` updates
        (:func:`cosine_lr_factor`), walked in ``lr_decay_stairs`` equal steps when the config
        has that setting and it is > 0, else per update.

        Diffusion-QL's recommended D4RL setting (``--lr_decay``: CosineAnnealingLR, stepped
        once per 50-epoch ``train()`` call of ``main.py``; docs/fidelity.md, "Diffusion-QL's
        learning rate"). Configs without ``lr_decay_steps``, or with 0, keep a constant lr.
        The base lr is kept in each param group as ``initial_lr`` (torch's convention), so
        it travels with checkpoints.
        """
        total = getattr(self.config, "lr_decay_steps", 0)
        if not total:
            return
        factor = cosine_lr_factor(self.step, total, getattr(self.config, "lr_decay_stairs", 0))
        for optimizer in self.optims.values():
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def to(self, device: str | torch.device) -> Agent:
        """Move every network (and any optimiser state) to ``device``; returns the agent.

        Modules move their parameters in place, so the optimisers keep stepping them."""
        self.device = torch.device(device)
        for module in (*self.nets.values(), *self.frozen.values()):
            module.to(self.device)
        for optimizer in self.optims.values():
            for state in optimizer.state.values():
                for key, value in state.items():
                    if isinstance(value, Tensor) and key != "step":
                        state[key] = value.to(self.device)
        return self

    def generator(self, seed: int) -> torch.Generator:
        """A torch Generator on the agent's device seeded with ``seed``: what seeded
        evaluation hands to :meth:`act` (on the CPU, the same noise as ever)."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def add_net(self, name: str, net: nn.Module) -> nn.Module:
        """Register a trained network (moved to the agent's device)."""
        self.nets[name] = net.to(self.device)
        return self.nets[name]

    def add_frozen(self, name: str, source: nn.Module) -> nn.Module:
        """Register a frozen deep copy of ``source`` (a target network)."""
        self.frozen[name] = copy.deepcopy(source).requires_grad_(False).to(self.device)
        return self.frozen[name]

    def batch_to_device(self, batch: Batch) -> Batch:
        """The batch on the agent's device (a no-op on CPU)."""
        return Batch(*(t.to(self.device) for t in batch))

    def observe(self, batch: Batch) -> Batch:
        """The batch as the losses see it: as sampled here; an agent that transforms its
        inputs (CQL's standardised states) does it here, once per update, for one seed or
        a seed stack alike (``ramac.seed_parallel``: fields [K, B, ...])."""
        return batch

    @torch.no_grad()
    def act(self, obs: Tensor | np.ndarray, generator: torch.Generator | None = None) -> Tensor:
        """Actions of the evaluated policy for a batch of states, in eval mode, no grad.

        ``obs`` [B, ds] (numpy or torch); returns [B, da] on the agent's device, within
        +-max_action. All sampling noise comes from ``generator`` when it is given (it
        must live on the agent's device), so seeded evaluation is repeatable.
        """
        obs_t = torch.as_tensor(np.asarray(obs) if not isinstance(obs, Tensor) else obs)
        obs_t = obs_t.to(self.device, torch.float32)
        if obs_t.dim() == 1:
            obs_t = obs_t.unsqueeze(0)
        modes = {name: net.training for name, net in self.nets.items()}
        for net in self.nets.values():
            net.eval()
        try:
            actions = self._policy(obs_t, generator)
        finally:
            for name, net in self.nets.items():
                net.train(modes[name])
        return actions.clamp(-self.max_action, self.max_action)

    def state_dict(self) -> dict[str, Any]:
        """A deep-copied snapshot of everything needed to resume bit-exactly."""
        return copy.deepcopy(
            {
                "step": self.step,
                "nets": {k: m.state_dict() for k, m in self.nets.items()},
                "frozen": {k: m.state_dict() for k, m in self.frozen.items()},
                "optims": {k: o.state_dict() for k, o in self.optims.items()},
                "carry": self.logged(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot (the agent must be built with the same config)."""
        state = copy.deepcopy(state)  # optimisers may alias the tensors they are given
        for group in ("nets", "frozen", "optims"):
            mine, theirs = getattr(self, group), state[group]
            if set(mine) != set(theirs):
                raise UserError(
                    f"checkpoint {group} {sorted(theirs)} do not match this agent's {sorted(mine)}"
                )
            for name, obj in mine.items():
                obj.load_state_dict(theirs[name])
        self.step = int(state["step"])
        self.carry = dict(state.get("carry", {}))


def cosine_lr_factor(step: int, total: int, stairs: int = 0) -> float:
    """The lr of update ``step`` (0-based) over the base lr, for a cosine from 1 to 0 over
    ``total`` updates.

    ``stairs`` = 0: the cosine is followed per update, 0.5 (1 + cos(pi min(step, total) /
    total)). ``stairs`` = S > 0: it is walked in S equal steps of total / S updates, as
    torch's ``CosineAnnealingLR(T_max=S)`` stepped once every total / S updates gives it:
    0.5 (1 + cos(pi t / S)) with t = min(floor(step S / total), S) scheduler steps taken
    (integer arithmetic, so a stair never ends an update early or late).
    """
    if stairs:
        t, t_max = min(step * stairs // total, stairs), stairs
    else:
        t, t_max = min(step, total), total
    return 0.5 * (1.0 + math.cos(math.pi * t / t_max))


# A state_dict key for what only resuming needs (a model-based agent's rollout buffer):
# checkpoints keep it, the snapshots kept for evaluation drop it (ramac.train).
RESUME_ONLY = "resume_only"


class AgentEntry(NamedTuple):
    """A registry row: the config dataclass, the agent class, the name shown in tables, and
    whose ``configs/algos`` file holds its per-dataset overrides (its own by default)."""

    config_cls: type
    agent_cls: type[Agent]
    display_name: str
    yaml_of: str | None = None


# Filled by ``register`` calls in each algorithm module; ``ramac.agents`` imports them all.
AGENTS: dict[str, AgentEntry] = {}


def register(
    name: str,
    config_cls: type,
    agent_cls: type[Agent],
    display_name: str,
    yaml_of: str | None = None,
) -> None:
    """Add an algorithm to :data:`AGENTS` under ``name`` (= its ``configs/algos`` file stem).

    ``yaml_of``: a variant that shares algorithm ``yaml_of``'s per-dataset settings reads
    that algorithm's overrides, so they are never written twice (``radac_public_loss`` reads
    ``configs/algos/radac.yaml``). If it also has a file of its own, that file holds only
    the variant's own settings per dataset and wins where both set a key
    (:func:`override_files`: ``rafmac`` reads radac.yaml, then rafmac.yaml for its actor's).
    """
    if name in AGENTS:
        raise ValueError(f"agent '{name}' registered twice")
    AGENTS[name] = AgentEntry(config_cls, agent_cls, display_name, yaml_of)


def yaml_name(name: str) -> str:
    """The stem of the ``configs/algos`` file that holds ``name``'s per-dataset overrides
    (for a variant with ``yaml_of`` that also has its own file: the shared one)."""
    return AGENTS[name].yaml_of or name


def override_files(name: str) -> list[str]:
    """The ``configs/algos`` stems ``name`` reads per dataset, in order; a later file's key
    wins: ``yaml_of``'s file, then the variant's own when it has one."""
    shared = yaml_name(name)
    own = ramac.config.CONFIG_DIR / "algos" / f"{name}.yaml"  # read late: tests move it
    return [shared, name] if shared != name and own.exists() else [shared]


def dataset_values(name: str, dataset: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """``name``'s per-dataset overrides (:func:`override_files` merged) and, per key, the
    file and dataset it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for stem in override_files(name):
        own = algo_values(stem, dataset)
        values |= own
        where = f"configs/algos/{stem}.yaml" + (f" [{dataset}]" if dataset else "")
        sources |= dict.fromkeys(own, where)
    return values, sources


def make_config(
    name: str,
    dataset: str | None = None,
    overrides: dict | None = None,
    schedule_scale: float = 1.0,
    overrides_from: str | None = None,
) -> Any:
    """The config of ``name``: its Config dataclass's defaults, then the dataset's overrides in
    ``configs/algos/<name>.yaml`` (:func:`override_files`), then ``overrides``, with schedule
    lengths scaled by ``schedule_scale`` (run budget / paper budget).

    Every value is checked against its type and range (:mod:`ramac.config_checks`); a bad
    one is a one-line UserError naming the key and where the value came from: the YAML
    file and dataset, or ``overrides_from`` (e.g. the suite file and profile; default
    ``<name> override``).
    """
    _load_all()
    if name not in AGENTS:
        raise UserError(f"unknown algorithm '{name}' (known: {', '.join(sorted(AGENTS))})")
    values, sources = dataset_values(name, dataset)
    files = " + ".join(f"configs/algos/{stem}.yaml" for stem in override_files(name))
    where = files + (f" [{dataset}]" if dataset else "")
    sources |= dict.fromkeys(overrides or {}, overrides_from or f"{name} override")
    values.update(overrides or {})
    for key in values:  # a setting no config holds any more: one line naming its source
        refuse_retired(sources[key], {key})
    config = build(AGENTS[name].config_cls, values, where)
    check_config(config, sources)
    return scale_schedules(config, schedule_scale)


def make_agent(
    name: str,
    obs_dim: int,
    act_dim: int,
    max_action: float,
    dataset: str | None = None,
    overrides: dict | None = None,
    schedule_scale: float = 1.0,
    device: str | torch.device = "cpu",
) -> Agent:
    """Build agent ``name`` for a dataset (unknown name or config key: UserError), on
    ``device`` (resolved by the caller: ``ramac.device.resolve_device``)."""
    config = make_config(name, dataset, overrides, schedule_scale)
    return AGENTS[name].agent_cls(obs_dim, act_dim, max_action, config).to(device)


def compile_fn(fn: Callable, device: torch.device) -> Callable:
    """``torch.compile(fn)``: CUDA graphs on a GPU (``mode="reduce-overhead"``); random
    draws from torch's eager stream (inductor's ``fallback_random``: same noise as eager)."""
    import torch._inductor.config as inductor

    inductor.fallback_random = True
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(fn, mode=mode)


def _load_all() -> None:
    """Import every algorithm module so that the registry is complete."""
    import ramac.agents  # noqa: F401  (its __init__ imports the modules)
