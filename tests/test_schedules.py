"""Schedules are stated against the paper's budget and scale with a run's (ramac.config)."""

import math

import pytest
import torch

from pipeline.runs import schedule_scale
from ramac.agents import make_agent, make_config
from ramac.agents.common import eta_at
from ramac.config import PAPER_STEPS, scale_schedules
from ramac.data.dataset import Batch


def test_scale_multiplies_every_schedule_length_and_rounds():
    config = make_config("radac", "hopper-medium-expert-v2")
    assert (config.eta_warmup_steps, config.ema_start) == (300_000, 1000)
    scaled = scale_schedules(config, 3000 / PAPER_STEPS)
    assert scaled.eta_warmup_steps == 450  # 300k x 0.0015: the same 15% of the run
    assert scaled.ema_start == 2  # 1.5 rounds to 2
    assert scaled.eta_ramp_steps == 0  # 0 (no ramp) stays 0
    assert scaled.eta == config.eta and scaled.lr_actor == config.lr_actor  # only lengths


def test_a_length_never_rounds_to_zero_and_scale_one_is_identity():
    config = make_config("radac", "hopper-medium-expert-v2")
    assert scale_schedules(config, 1e-9).eta_warmup_steps == 1
    assert scale_schedules(config, 1.0) is config


def test_make_config_scales_and_the_eta_schedule_follows():
    config = make_config("radac", "walker2d-medium-expert-v2", schedule_scale=0.01)
    assert config.eta_warmup_steps == 3000
    assert eta_at(2999, config.eta, config.eta_warmup_steps, config.eta_ramp_steps) == 0.0
    assert eta_at(3000, config.eta, config.eta_warmup_steps, config.eta_ramp_steps) == 0.05


def test_diffusion_ql_lr_decay_spans_the_scaled_budget():
    config = make_config("diffusion_ql_annealed", "hopper-medium-expert-v2", schedule_scale=0.5)
    assert config.lr_decay_steps == PAPER_STEPS // 2
    official = make_config("diffusion_ql", "hopper-medium-expert-v2", schedule_scale=0.5)
    # 2,000 stairs of 25,000 updates: the 1M-update run takes the official run's 40
    assert (official.lr_decay_steps, official.lr_decay_stairs) == (50_000_000, 2000)


def test_schedule_scale_is_steps_over_the_paper_profile():
    assert schedule_scale({"profiles": {"paper": {"steps": 20_000}}}, 1200) == pytest.approx(0.06)
    assert schedule_scale({"profiles": {}}, 500) == 500 / PAPER_STEPS


def _batch(n: int = 8) -> Batch:
    zeros = torch.zeros(n, 1)
    return Batch(torch.zeros(n, 3), torch.rand(n, 2) * 2 - 1, zeros, torch.zeros(n, 3), zeros)


def test_cosine_lr_decay_hits_the_known_values_and_survives_a_checkpoint():
    tiny = dict(batch_size=8, actor_hidden=8, critic_hidden=8, n_steps=2, lr_decay_steps=8)
    agent = make_agent("diffusion_ql_annealed", 3, 2, 1.0, overrides=tiny)
    lr0 = agent.optims["actor"].param_groups[0]["lr"]
    seen = []
    for _ in range(9):
        agent.update(_batch())
        seen.append(agent.optims["critic"].param_groups[0]["lr"])
    # update k (0-based) runs at lr0 * (1 + cos(pi k / 8)) / 2, then stays at 0
    expected = [lr0 * 0.5 * (1 + math.cos(math.pi * min(k, 8) / 8)) for k in range(9)]
    assert seen == pytest.approx(expected)
    assert seen[4] == pytest.approx(lr0 / 2) and seen[8] == 0.0

    resumed = make_agent("diffusion_ql_annealed", 3, 2, 1.0, overrides=tiny)
    partial = make_agent("diffusion_ql_annealed", 3, 2, 1.0, overrides=tiny)
    for _ in range(3):
        partial.update(_batch())
    resumed.load_state_dict(partial.state_dict())
    resumed.update(_batch())
    assert resumed.optims["actor"].param_groups[0]["lr"] == pytest.approx(expected[3])
    assert resumed.optims["actor"].param_groups[0]["initial_lr"] == lr0


def test_no_decay_without_lr_decay_steps():
    agent = make_agent("radac", 3, 2, 1.0, overrides=dict(batch_size=8, n_steps=2))
    lr0 = agent.optims["actor"].param_groups[0]["lr"]
    agent.update(_batch())
    assert agent.optims["actor"].param_groups[0]["lr"] == lr0


def official_lr(lr0: float, update: int, run: int) -> float:
    """The lr Diffusion-QL's code trains update ``update`` (0-based) of a ``run``-update run
    at, scaled from its 2M-update run: CosineAnnealingLR(T_max = 2,000 epochs), eta_min 0,
    stepped after each train() call of eval_freq 50 x 1,000 updates (main.py,
    agents/ql_diffusion.py of Zhendong-Wang/Diffusion-Policies-for-Offline-RL @ a37a009),
    i.e. after every run / 40 updates; eta_t = eta_min + (eta_0 - eta_min)(1 + cos(pi t /
    T_max)) / 2 with t the scheduler steps taken (train() calls finished)."""
    calls_done = update * (PAPER_STEPS // 50_000) // run  # 40 train() calls per run
    return lr0 * (1 + math.cos(math.pi * calls_done / 2000)) / 2


@pytest.mark.parametrize("name", ["diffusion_ql", "diffusion_ql_annealed"])
def test_diffusion_ql_lr_at_a_quarter_half_and_end_of_a_run(name):
    """The default runs the official stepping (the lr stays above 99.9% of its start); the
    annealed variant decays to 0 over the run. Read from the optimisers, update by update."""
    run = 80  # 40 stairs of 2 updates
    tiny = dict(batch_size=8, actor_hidden=8, critic_hidden=8, n_steps=2, act_candidates=1)
    agent = make_agent(name, 3, 2, 1.0, overrides=tiny, schedule_scale=run / PAPER_STEPS)
    lr0 = agent.optims["actor"].param_groups[0]["lr"]
    seen = []  # the lr update k ran at: both optimisers
    for _ in range(run):
        agent.update(_batch())
        seen.append({o.param_groups[0]["lr"] for o in agent.optims.values()})
    assert all(len(lrs) == 1 for lrs in seen)
    seen = [lrs.pop() for lrs in seen]
    if name == "diffusion_ql":
        expected = [official_lr(lr0, k, run) for k in range(run)]
    else:
        expected = [lr0 * (1 + math.cos(math.pi * k / run)) / 2 for k in range(run)]
    assert seen == pytest.approx(expected, rel=1e-12)
    quarter, half, end = (seen[k - 1] / lr0 for k in (run // 4, run // 2, run))
    if name == "diffusion_ql":  # the updates ending 25/50/100% ran after 9, 19, 39 calls
        assert (quarter, half, end) == pytest.approx(
            [(1 + math.cos(math.pi * t / 2000)) / 2 for t in (9, 19, 39)], rel=1e-12
        )
        assert end > 0.999 and seen[0] == seen[1] == lr0 and seen[2] < lr0
    else:
        assert quarter == pytest.approx((1 + math.cos(math.pi * 19 / 80)) / 2)
        assert half == pytest.approx((1 + math.cos(math.pi * 39 / 80)) / 2)
        assert end < 1e-3
    # torch's own CosineAnnealingLR stepped as main.py steps it gives the same lrs
    if name == "diffusion_ql":
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2000, eta_min=0.0)
        torch_lrs = []
        for _call in range(40):
            torch_lrs += [opt.param_groups[0]["lr"]] * (run // 40)
            opt.step()  # no gradient: nothing moves; keeps torch's order check quiet
            sched.step()
        assert seen == pytest.approx(torch_lrs, rel=1e-9)
