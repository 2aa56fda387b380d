"""The update loop never waits for the device between logging steps (issue 24, item 3).

On a GPU, reading a tensor back into Python (``.item()``, ``float(t)``, ``if t:``,
``.tolist()``, ``.cpu()``, ``.numpy()``) makes the host wait for every queued kernel. The
rule is checked here on the CPU: while the loop runs, those methods are wrapped with a
counter, paused only where reading is the point (``logged`` at logging steps, checkpoints),
and every update in between must read nothing. Torch's optimisers are left out: Adam keeps
its step count on the CPU on every device, so reading it waits for no GPU.
"""

import contextlib
import functools

import pytest
import torch
from test_agents_all import TINY, make
from tiny_data import tiny_dataset

import ramac.train
from ramac.agents.base import Agent
from ramac.data.dataset import BatchSampler
from ramac.envs.bandit import BanditSpec, make_dataset
from ramac.seed_parallel import SeedStack
from ramac.train import TrainSettings, train, train_seeds

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


class SyncGuard:
    """Counts reads of tensors into Python while ``on`` (their callers, for the message)."""

    def __init__(self) -> None:
        self.on = False
        self.reads: list[str] = []

    def wrap(self, name: str):
        original = getattr(torch.Tensor, name)

        @functools.wraps(original)
        def counted(tensor, *args, **kwargs):
            if self.on:
                import sys

                frame = sys._getframe(1)
                where = frame.f_code.co_filename
                if "torch/optim/" not in where:
                    self.reads.append(f"{name} at {where}:{frame.f_lineno}")
            return original(tensor, *args, **kwargs)

        return counted

    @contextlib.contextmanager
    def paused(self):
        was, self.on = self.on, False
        try:
            yield
        finally:
            self.on = was


@pytest.fixture
def guard(monkeypatch):
    guard = SyncGuard()
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, guard.wrap(name))

    def pause(fn):
        @functools.wraps(fn)
        def paused(*args, **kwargs):
            with guard.paused():
                return fn(*args, **kwargs)

        return paused

    def watched(fn):
        @functools.wraps(fn)
        def on(*args, **kwargs):
            guard.on = True
            try:
                return fn(*args, **kwargs)
            finally:
                guard.on = False

        return on

    # the loop is watched; where it reads on purpose (logging steps, checkpoints) is not
    monkeypatch.setattr(ramac.train, "_loop", watched(ramac.train._loop))
    monkeypatch.setattr(ramac.train, "_checkpoint", pause(ramac.train._checkpoint))
    monkeypatch.setattr(Agent, "logged", pause(Agent.logged))
    monkeypatch.setattr(SeedStack, "logged", pause(SeedStack.logged))
    return guard


def test_the_guard_sees_a_read(guard):
    """The guard itself: a float() of a tensor while watching is counted."""
    guard.on = True
    float(torch.ones(()))
    bool(torch.ones(()) > 0)
    guard.on = False
    assert len(guard.reads) == 2


IQN_TINY = {"batch_size": 16, "critic_hidden": 8, "embed_dim": 8, "head_hidden": 8}
RADAC_TINY = IQN_TINY | {"n_quantiles": 4, "actor_hidden": 8, "n_steps": 2, "ema_every": 1}


@pytest.mark.parametrize("bandit", [True, False], ids=["terminal", "bootstrapping"])
def test_radac_training_reads_nothing_between_logging_steps(tmp_path, guard, bandit):
    """RADAC's loop (the bandit's all-terminal batches and bootstrapping ones): 12 updates,
    logged every 4th, no read in the updates; the log still has every logging step."""
    dataset = make_dataset(BanditSpec(n_samples=100), seed=0)[0] if bandit else tiny_dataset()
    settings = TrainSettings(steps=12, seed=1, checkpoint_every=6, log_every=4, progress=False)
    train("radac", dataset, tmp_path, settings, RADAC_TINY)
    assert guard.reads == []
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["4", "8", "12"]


def test_a_seed_stack_reads_nothing_between_logging_steps(tmp_path, guard):
    dataset = tiny_dataset()
    settings = [
        TrainSettings(steps=6, seed=s, checkpoint_every=6, log_every=3, progress=False)
        for s in (0, 1)
    ]
    train_seeds("radac", dataset, [tmp_path / "a", tmp_path / "b"], settings, RADAC_TINY)
    assert guard.reads == []


@pytest.mark.parametrize("name", sorted(TINY))
def test_no_agent_update_reads_a_tensor(name, guard):
    """Every agent's update (RAVL's between its rollouts, which are data-dependent and read
    their statistics back: exempt), on batches from the training sampler."""
    agent = make(name, **({"rollout_every": 100} if "ravl" in name else {}))
    sampler = BatchSampler(tiny_dataset(), agent.config.batch_size, seed=0)
    agent.train_step(sampler.sample(), sampler.all_terminal)  # RAVL's first: a rollout
    guard.on = True
    for _ in range(3):
        agent.train_step(sampler.sample(), sampler.all_terminal)
    guard.on = False
    assert guard.reads == []
    assert all(isinstance(v, float) for v in agent.logged().values())


def test_the_sampler_knows_which_batches_bootstrap():
    """What the sampler says of a batch, from its host indices, is what the batch holds."""
    dataset = tiny_dataset(n=4)
    dataset = dataset.replace(terminals=dataset.terminals | [True, True, True, False])
    sampler = BatchSampler(dataset, batch_size=2, seed=0)
    seen = set()
    for _ in range(40):
        batch = sampler.sample()
        assert sampler.all_terminal == (not bool(batch.not_done.any()))
        seen.add(sampler.all_terminal)
    assert seen == {True, False}


def test_a_seed_stack_holds_the_data_once(tmp_path, monkeypatch):
    samplers = []

    class Recorded(BatchSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            samplers.append(self)

    monkeypatch.setattr(ramac.train, "BatchSampler", Recorded)
    settings = [TrainSettings(steps=2, seed=s, progress=False) for s in (0, 1, 2)]
    dirs = [tmp_path / str(s) for s in range(3)]
    train_seeds("radac", tiny_dataset(), dirs, settings, RADAC_TINY)
    assert len(samplers) == 3
    assert len({s.obs.data_ptr() for s in samplers}) == 1
