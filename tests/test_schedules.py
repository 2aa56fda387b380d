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
    config = make_config("diffusion_ql", "hopper-medium-expert-v2", schedule_scale=0.5)
    assert config.lr_decay_steps == PAPER_STEPS // 2


def test_schedule_scale_is_steps_over_the_paper_profile():
    assert schedule_scale({"profiles": {"paper": {"steps": 20_000}}}, 1200) == pytest.approx(0.06)
    assert schedule_scale({"profiles": {}}, 500) == 500 / PAPER_STEPS


def _batch(n: int = 8) -> Batch:
    zeros = torch.zeros(n, 1)
    return Batch(torch.zeros(n, 3), torch.rand(n, 2) * 2 - 1, zeros, torch.zeros(n, 3), zeros)


def test_cosine_lr_decay_hits_the_known_values_and_survives_a_checkpoint():
    tiny = dict(batch_size=8, actor_hidden=8, critic_hidden=8, n_steps=2, lr_decay_steps=8)
    agent = make_agent("diffusion_ql", 3, 2, 1.0, overrides=tiny)
    lr0 = agent.optims["actor"].param_groups[0]["lr"]
    seen = []
    for _ in range(9):
        agent.update(_batch())
        seen.append(agent.optims["critic"].param_groups[0]["lr"])
    # update k (0-based) runs at lr0 * (1 + cos(pi k / 8)) / 2, then stays at 0
    expected = [lr0 * 0.5 * (1 + math.cos(math.pi * min(k, 8) / 8)) for k in range(9)]
    assert seen == pytest.approx(expected)
    assert seen[4] == pytest.approx(lr0 / 2) and seen[8] == 0.0

    resumed = make_agent("diffusion_ql", 3, 2, 1.0, overrides=tiny)
    partial = make_agent("diffusion_ql", 3, 2, 1.0, overrides=tiny)
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
