"""RADAC update throughput: ramac's agent vs a baseline in the public code's style.

Same config (halfcheetah-medium-expert: obs 17, act 6, N = 32 levels, batch 256, T = 5,
embedding 128, hidden 256). The baseline, kept here only, follows the public RADAC code's
structure (docs/reference-code.md, "RADAC"): two separate critic modules, state and action
repeated N times before the critic MLP, each critic stepped by its own optimiser in a
Python loop. Both use the correct quantile Huber loss, so only the speed differs.

    python benchmarks/bench_train.py [--iters 10] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from ramac.agents.base import make_agent
from ramac.data.dataset import Batch
from ramac.nets.diffusion import DiffusionActor
from ramac.nets.iqn import quantile_huber_loss
from ramac.runtime import keep_freed_memory

OBS, ACT, N, BATCH, EMB, HIDDEN = 17, 6, 32, 256, 128, 256


class RepeatedIQN(nn.Module):
    """One IQN critic that tiles (s, a) N times before its MLP, as the public code does."""

    def __init__(self) -> None:
        super().__init__()
        self.state = nn.Linear(OBS, HIDDEN)
        self.action = nn.Linear(ACT, HIDDEN)
        self.joint = nn.Linear(2 * HIDDEN, EMB)
        self.tau = nn.Linear(N, EMB)
        self.head = nn.Sequential(nn.Linear(EMB, 256), nn.ReLU(), nn.Linear(256, 1))

    def forward(self, obs: torch.Tensor, act: torch.Tensor, taus: torch.Tensor) -> torch.Tensor:
        b, n = obs.shape[0], taus.shape[-1]
        obs_r = obs.repeat_interleave(n, 0)
        act_r = act.repeat_interleave(n, 0)
        phi = F.relu(
            self.joint(torch.cat([F.relu(self.state(obs_r)), F.relu(self.action(act_r))], 1))
        )
        i = torch.arange(N, dtype=taus.dtype, device=taus.device)
        psi = F.relu(self.tau(torch.cos(math.pi * i * taus.reshape(-1, 1))))
        return self.head(phi * psi).reshape(b, n)


class BaselineRADAC:
    """The public code's update structure: per-critic modules, optimisers and steps."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.actor = DiffusionActor(OBS, ACT, 1.0, 5, 256, 3, 16).to(self.device)
        self.ema = copy.deepcopy(self.actor)
        self.critics = [RepeatedIQN().to(self.device), RepeatedIQN().to(self.device)]
        self.targets = [copy.deepcopy(c) for c in self.critics]
        self.critic_opts = [torch.optim.Adam(c.parameters(), lr=5e-5) for c in self.critics]
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-4)

    def update(self, b: Batch) -> None:
        with torch.no_grad():
            next_a = self.ema.sample(b.next_obs)
            taus_next = torch.rand(b.obs.shape[0], N, device=self.device)
            z_next = torch.min(*[t(b.next_obs, next_a, taus_next) for t in self.targets])
            target = (b.rewards + b.not_done * 0.99 * z_next).clamp(-300, 300)
        for critic, opt in zip(self.critics, self.critic_opts, strict=True):
            taus = torch.rand(b.obs.shape[0], N, device=self.device)
            loss = quantile_huber_loss(critic(b.obs, b.actions, taus), taus, target)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(critic.parameters(), 5.0)
            opt.step()
        bc = self.actor.loss(b.actions, b.obs)
        a_hat = self.actor.sample(b.obs)
        taus = 0.1 * torch.rand(b.obs.shape[0], N, device=self.device)
        risk = torch.min(*[c(b.obs, a_hat, taus) for c in self.critics]).mean()
        self.actor_opt.zero_grad()
        (bc - 0.02 * risk).backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), 5.0)
        self.actor_opt.step()
        with torch.no_grad():
            for critic, target_net in zip(self.critics, self.targets, strict=True):
                for p, q in zip(critic.parameters(), target_net.parameters(), strict=True):
                    q.mul_(0.995).add_(0.005 * p)


def random_batch(
    device: str | torch.device = "cpu", generator: torch.Generator | None = None
) -> Batch:
    """A HalfCheetah-shaped batch (obs 17, act 6, 256 rows), drawn on the CPU (from
    ``generator`` when given, else torch's global stream) and moved to ``device``."""
    return Batch(
        torch.randn(BATCH, OBS, generator=generator).to(device),
        (torch.rand(BATCH, ACT, generator=generator) * 2 - 1).to(device),
        torch.randn(BATCH, 1, generator=generator).to(device),
        torch.randn(BATCH, OBS, generator=generator).to(device),
        torch.ones(BATCH, 1).to(device),
    )


def seconds_per_update(update, batches: list[Batch]) -> float:
    start = time.perf_counter()
    for b in batches:
        update(b)
    return (time.perf_counter() - start) / len(batches)


def interleaved_its(updates: dict, iters: int, rounds: int) -> dict[str, float]:
    """Median it/s of each update over ``rounds`` alternating blocks of ``iters`` updates.

    Alternating the cases block by block exposes them to the same background load, so the
    ratio holds up on a shared machine even when absolute figures drift.
    """
    batches = [random_batch() for _ in range(iters)]
    for update in updates.values():
        seconds_per_update(update, batches[:3])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in updates}
    for _ in range(rounds):
        for name, update in updates.items():
            times[name].append(seconds_per_update(update, batches))
    return {name: 1.0 / statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=10, help="updates per block")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc's allocator as it is (training calls ramac.runtime.keep_freed_memory)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = "default allocator"
    if not args.default_allocator and keep_freed_memory():
        allocator = "freed memory kept (both cases)"
    torch.manual_seed(0)
    agent = make_agent("radac", OBS, ACT, 1.0, dataset="halfcheetah-medium-expert-v2")
    baseline = BaselineRADAC()
    rates = interleaved_its(
        {"baseline": baseline.update, "ramac": agent.update}, args.iters, args.rounds
    )
    base, ours = rates["baseline"], rates["ramac"]
    print(
        f"RADAC update, halfcheetah-ME config (N={N}, batch {BATCH}), {args.threads} threads, "
        + allocator
    )
    print(f"  baseline (public-code style): {base:6.2f} it/s")
    print(f"  ramac:                        {ours:6.2f} it/s   ratio {ours / base:.2f}x")


if __name__ == "__main__":
    main()
