"""Seed-parallel training: K seeds in one stacked update, each behaving as its own run.

Together these pin down "statistically the same as a separate run": a one-seed stack
reproduces a separate run (same losses, clipping, optimiser, EMA and target updates), a
seed's trajectory does not depend on the other seeds' data, and every seed starts from its
own weights and ends in a checkpoint an ordinary agent loads.
"""

import pytest
import torch

from ramac.agents.base import make_agent
from ramac.data.dataset import Batch
from ramac.seed_parallel import SeedStack

OBS, ACT, B = 5, 3, 16
IQN = {"critic_hidden": 16, "embed_dim": 8, "head_hidden": 16, "n_quantiles": 8, "n_cos": 8}
TINY = {
    "radac": IQN | {"actor_hidden": 16, "n_steps": 3, "ema_start": 2, "ema_every": 1},
    "rafmac": IQN | {"actor_hidden": 16, "n_steps": 3},
    "rafmac_public": IQN | {"actor_hidden": 16, "n_steps": 3},
    "oraac": IQN | {"actor_hidden": [16], "prior_hidden": 16, "target_update_every": 2},
    "fql": {"actor_hidden": 16, "critic_hidden": 16, "flow_steps": 3, "grad_norm": 1.0},
    # a cosine lr decay short enough to move the lr in the test's few updates
    "diffusion_ql": {"actor_hidden": 16, "critic_hidden": 16, "n_steps": 3, "lr_decay_steps": 6},
    "diffusion_ql_flow": {"actor_hidden": 16, "critic_hidden": 16, "n_steps": 3},
    "bc": {"actor_hidden": 16, "n_steps": 3, "grad_norm": 1.0},
    # log alpha and alpha' are 0-d parameters with their own Adams: [K] in a stack
    "cql": {
        "actor_hidden": 16,
        "critic_hidden": 16,
        "cql_n_actions": 3,
        "cql_lagrange": True,
        "entropy_tuning": True,
    },
    # CODAC's QuantileMlp has no separate embedding width (its tau embedding is the base's)
    "codac": {"critic_hidden": 16, "head_hidden": 16, "n_quantiles": 8, "n_cos": 8}
    | {
        "actor_hidden": 16,
        "cql_n_actions": 3,
        "cql_lagrange": True,
        "entropy_tuning": True,
        "alpha": 1.0,
    },
}


def tiny_agent(algo: str, seed: int):
    torch.manual_seed(seed)
    return make_agent(algo, OBS, ACT, 1.0, overrides=TINY[algo] | {"batch_size": B})


def batches(seed: int, n: int, reward_scale: float = 1.0) -> list[Batch]:
    """Non-terminal transitions, so every update bootstraps (and samples target actions)."""
    g = torch.Generator().manual_seed(seed)
    return [
        Batch(
            torch.randn(B, OBS, generator=g),
            torch.rand(B, ACT, generator=g) * 2 - 1,
            reward_scale * torch.randn(B, 1, generator=g),
            torch.randn(B, OBS, generator=g),
            torch.ones(B, 1),
        )
        for _ in range(n)
    ]


def assert_states_close(a: dict, b: dict, **tol) -> None:
    for group in ("nets", "frozen"):
        assert a[group].keys() == b[group].keys()
        for name in a[group]:
            for key, value in a[group][name].items():
                torch.testing.assert_close(value, b[group][name][key], **tol, msg=f"{name}.{key}")
    for name, optim in a["optims"].items():
        for index, entry in optim["state"].items():
            for key, value in entry.items():
                torch.testing.assert_close(value, b["optims"][name]["state"][index][key], **tol)


@pytest.mark.parametrize("algo", sorted(TINY))
def test_a_one_seed_stack_reproduces_a_separate_run(algo):
    single, stack = tiny_agent(algo, 0), SeedStack([tiny_agent(algo, 0)])
    data = batches(1, 6)
    torch.manual_seed(7)
    logs_single = [single.update(b) for b in data]
    torch.manual_seed(7)  # same noise: vmap draws [1, ...] from the same stream
    logs_stack = [stack.update([b])[0] for b in data]
    assert logs_single[-1].keys() == logs_stack[-1].keys()
    for row_a, row_b in zip(logs_single, logs_stack, strict=True):
        for key in row_a:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-4, abs=1e-5), key
    # Only float summation order differs (bmm over seeds vs one matmul).
    assert_states_close(single.state_dict(), stack.agent_state(0), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("algo", ["radac", "fql", "oraac", "cql", "codac"])
def test_a_seed_does_not_feel_the_other_seeds_data(algo):
    """Seed 0's run is bit-identical whatever seed 1 trains on, even gradients 1000x larger
    (which its per-seed gradient clipping must keep to itself)."""
    finals = []
    for scale in (1.0, 1000.0):
        stack = SeedStack([tiny_agent(algo, 0), tiny_agent(algo, 1)])
        torch.manual_seed(3)
        for mine, other in zip(batches(1, 5), batches(2, 5, scale), strict=True):
            stack.update([mine, other])
        finals.append((stack.agent_state(0), stack.agent_state(1)))
    (a0, a1), (b0, b1) = finals
    assert_states_close(a0, b0, rtol=0, atol=0)
    with pytest.raises(AssertionError):
        assert_states_close(a1, b1, rtol=0, atol=0)


def test_each_seed_starts_from_its_own_weights_and_checkpoints_load_into_an_agent():
    stack = SeedStack([tiny_agent("radac", 3), tiny_agent("radac", 4)])
    assert_states_close(stack.agent_state(1), tiny_agent("radac", 4).state_dict(), rtol=0, atol=0)
    torch.manual_seed(0)
    for b in batches(5, 3):
        stack.update([b, b])
    state = stack.agent_state(1)
    agent = tiny_agent("radac", 99)
    agent.load_state_dict(state)
    assert agent.step == 3
    assert_states_close(agent.state_dict(), state, rtol=0, atol=0)
    assert agent.act(torch.zeros(4, OBS)).shape == (4, ACT)
    # Same data and noise stream, different initial weights: the seeds stay apart.
    assert not torch.equal(
        stack.agent_state(0)["nets"]["actor"]["denoiser.net.0.weight"],
        state["nets"]["actor"]["denoiser.net.0.weight"],
    )


def test_a_stack_needs_batches_for_every_seed_and_agents_at_one_step():
    stack = SeedStack([tiny_agent("bc", 0), tiny_agent("bc", 1)])
    with pytest.raises(ValueError, match="expected 2 batches"):
        stack.update(batches(0, 1))
    ahead = tiny_agent("bc", 2)
    ahead.update(batches(0, 1)[0])
    with pytest.raises(ValueError, match="same step"):
        SeedStack([tiny_agent("bc", 0), ahead])
