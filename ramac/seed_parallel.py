"""K seeds of one algorithm trained as one: every parameter stacked on a leading seed dimension.

Why: one small RL update leaves a GPU idle between kernel launches, so K seeds in one
batched update cost little more than one seed. (On a CPU the update is FLOP-bound and
stacking saves only the per-operation overhead: ``benchmarks/bench_seed_parallel.py``.)

How: the K agents are built exactly as K separate runs would build them (weights from
their own seeds), then each parameter and each optimiser state is stacked into one
[K, ...] tensor installed in the first agent, the template. Each :class:`Phase` loss is
evaluated for all seeds at once by ``torch.func.vmap`` over ``functional_call``. Seeds share
no parameter, so the gradient of the summed loss is each seed's own gradient; it is
clipped per seed (per seed and critic for the IQN ensembles), and Adam, being elementwise,
steps each seed's slice exactly as that seed's own optimiser would. EMA and target updates
are elementwise too.

Randomness: each seed keeps its own data order (its sampler, seeded as a separate run's)
and initial weights. The noise inside the losses (diffusion steps, quantile levels) comes
from the process's torch stream, drawn independently per seed by
``vmap(randomness="different")``: the same law as a separate run's noise, not the same
numbers, except for K = 1, which reproduces a separate run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ramac.agents.base import Agent, Phase, compile_fn, optimizer_params, phase_key
from ramac.agents.common import grad_step, seed_batched
from ramac.data.dataset import Batch


class _Losses(nn.Module):
    """Every network of the template agent under one module, so ``functional_call`` can
    swap all their parameters for one seed's slices while a phase's loss runs."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({**agent.nets, **agent.frozen})

    def forward(self, loss, batch: Batch):
        return loss(batch)


class SeedStack:
    """K agents of one algorithm and config, differing in seed, updated as one.

    ``update`` takes one batch per seed and returns one log row per seed; ``agent_state(k)``
    is seed k's state in :meth:`Agent.state_dict` form, so its checkpoints load into an
    ordinary agent for evaluation or resumption.
    """

    def __init__(self, agents: list[Agent]) -> None:
        if not agents:
            raise ValueError("a seed stack needs at least one agent")
        if len({agent.step for agent in agents}) != 1:
            raise ValueError("the agents of a seed stack must be at the same step")
        if set(agents[0].nets) & set(agents[0].frozen):
            raise ValueError("net and frozen names must differ")
        self.agent, self.n_seeds = agents[0], len(agents)
        # Each log value of the last step that computed it, one entry per seed ([K]): the
        # seeds' carries as :class:`Agent` keeps one (resumed ones start from theirs).
        self.carry: dict[str, Tensor] = {
            # float64 holds every logged value (float32 or float64) exactly
            name: torch.tensor([float(a.carry[name]) for a in agents], dtype=torch.float64)
            for name in agents[0].carry
        }
        self.compiled: dict[tuple, Any] | None = None
        stacked = self._stack_parameters(agents)
        for name, optimizer in self.agent.optims.items():
            self.agent.optims[name] = _stacked_optimizer(
                optimizer, [agent.optims[name] for agent in agents], stacked
            )
        self.losses = _Losses(self.agent)

    def _stack_parameters(self, agents: list[Agent]) -> dict[int, nn.Parameter]:
        """Install [K, ...] parameters in the template's modules; old id -> new parameter."""
        stacked: dict[int, nn.Parameter] = {}
        modules = [{**agent.nets, **agent.frozen} for agent in agents]
        for name, module in modules[0].items():
            for param_name, old in list(module.named_parameters()):
                values = torch.stack([m[name].get_parameter(param_name).detach() for m in modules])
                new = nn.Parameter(values, requires_grad=old.requires_grad)
                owner, _, leaf = param_name.rpartition(".")
                setattr(module.get_submodule(owner), leaf, new)
                stacked[id(old)] = new
        return stacked

    def update(self, batches: list[Batch]) -> list[dict[str, float]]:
        """One update of every seed, seed k on ``batches[k]``; a log row per seed (read back
        from the device: the training loop calls :meth:`train_step` and :meth:`logged`)."""
        self.train_step(batches)
        return self.logged()

    def train_step(self, batches: list[Batch], all_terminal: bool | None = None) -> None:
        """One update of every seed, seed k on ``batches[k]``, without reading any tensor
        back into Python; ``all_terminal``: whether no transition of any batch bootstraps
        (None: read from the batches, once, outside vmap)."""
        if len(batches) != self.n_seeds:
            raise ValueError(f"expected {self.n_seeds} batches, got {len(batches)}")
        agent = self.agent
        batch = agent.observe(
            Batch(*(torch.stack(field).to(agent.device) for field in zip(*batches, strict=True)))
        )
        agent.schedule_learning_rates()
        logs: dict[str, Tensor] = {}
        if all_terminal is None:
            all_terminal = not bool(batch.not_done.any())
        for phase in agent.phases():
            optimizer = agent.optims[phase.optimizer]
            params = optimizer_params(optimizer)
            losses, values = self._seed_losses(phase, batch, params, all_terminal)
            members = self.n_seeds * max(phase.per_member, 1)  # clip each seed on its own
            per_member = members if phase.grad_norm > 0 else 0
            grad_step(optimizer, losses.sum(), params, phase.grad_norm, per_member)
            logs.update(values)
        agent.after_phases()
        agent.step += 1
        self.carry.update({name: value.detach() for name, value in logs.items()})

    def logged(self) -> list[dict[str, float]]:
        """Each seed's log values as floats: a host synchronisation (logging steps only)."""
        rows = [{} for _ in range(self.n_seeds)]
        for name, values in self.carry.items():
            for row, value in zip(rows, values.tolist(), strict=True):
                row[name] = value
        return rows

    def compile_losses(self) -> None:
        """Run each phase's vmapped loss through ``torch.compile`` from now on (as
        :meth:`Agent.compile_losses`)."""
        self.compiled = {}

    def _seed_losses(
        self,
        phase: Phase,
        batch: Batch,
        trained: list[Tensor],
        all_terminal: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The phase's loss [K] and log values [K]; parameters it does not train detached.

        ``all_terminal``: no transition of any seed's batch bootstraps, so the losses may skip
        target actions and target critics (``ramac.agents.common.no_bootstrap``)."""
        trained_ids = {id(p) for p in trained}
        params = {
            name: p if id(p) in trained_ids else p.detach()
            for name, p in self.losses.named_parameters()
        }
        with seed_batched(all_terminal):
            return self._vmapped(phase)(params, batch)

    def _vmapped(self, phase: Phase):
        """The phase's loss vmapped over seeds (compiled after :meth:`compile_losses`)."""
        key = phase_key(phase)
        if self.compiled is not None and key in self.compiled:
            return self.compiled[key]

        def one_seed(params: dict[str, Tensor], batch: Batch):
            return functional_call(self.losses, params, (phase.loss, batch))

        fn = vmap(one_seed, randomness="different")
        if self.compiled is not None:
            fn = self.compiled[key] = compile_fn(fn, self.agent.device)
        return fn

    def agent_state(self, k: int) -> dict[str, Any]:
        """Seed k's state, in the form (and with the copies) of :meth:`Agent.state_dict`."""
        agent = self.agent
        return {
            "step": agent.step,
            "nets": {name: _module_slice(m, k) for name, m in agent.nets.items()},
            "frozen": {name: _module_slice(m, k) for name, m in agent.frozen.items()},
            "optims": {name: _optimizer_slice(o, k) for name, o in agent.optims.items()},
            "carry": {name: float(values[k]) for name, values in self.carry.items()},
        }


def _stacked_optimizer(
    template: torch.optim.Optimizer,
    per_seed: list[torch.optim.Optimizer],
    stacked: dict[int, nn.Parameter],
) -> torch.optim.Optimizer:
    """An optimiser of the template's kind over the stacked parameters, with the seeds'
    states (moments) stacked and the shared ones (Adam's step count) kept once."""
    groups = [
        group | {"params": [stacked[id(p)] for p in group["params"]]}
        for group in template.param_groups
    ]
    optimizer = type(template)(groups, **template.defaults)
    states = [o.state_dict() for o in per_seed]
    merged = {
        index: {
            key: value if key == "step" else torch.stack([s["state"][index][key] for s in states])
            for key, value in entry.items()
        }
        for index, entry in states[0]["state"].items()
    }
    optimizer.load_state_dict({"state": merged, "param_groups": states[0]["param_groups"]})
    return optimizer


def _module_slice(module: nn.Module, k: int) -> dict[str, Tensor]:
    """The module's state_dict with every parameter cut to seed k (buffers are shared)."""
    params = dict(module.named_parameters())
    return {
        name: (value[k] if name in params else value).clone()
        for name, value in module.state_dict().items()
    }


def _optimizer_slice(optimizer: torch.optim.Optimizer, k: int) -> dict[str, Any]:
    """The optimiser's state_dict with every per-parameter state cut to seed k."""
    state = optimizer.state_dict()
    return {
        "state": {
            index: {
                key: value.clone() if key == "step" else value[k].clone()
                for key, value in entry.items()
            }
            for index, entry in state["state"].items()
        },
        "param_groups": state["param_groups"],
    }
