"""Hazard specs: the decision rule, relabelling, the env wrapper, spec-set YAML, env factory."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from ramac.data.dataset import OfflineDataset, Provenance
from ramac.envs.hazards import (
    HazardSpec,
    HazardWrapper,
    hazard_outcome,
    load_hazard,
    load_spec_set,
    relabel,
)
from ramac.envs.mujoco import FULL_HORIZON, make_env, make_vector_env
from ramac.errors import UserError


def velocity(threshold=5.0, absolute=True, p=1.0, cost=-10.0, mode="add", **kw) -> HazardSpec:
    return HazardSpec(
        name="test/velocity", kind="velocity", obs_index=0, threshold=threshold,
        absolute=absolute, probability=p, cost=cost, mode=mode, **kw,
    )  # fmt: skip


def pitch(low=-0.17, high=0.04, p=1.0, cost=-50.0, factor=None) -> HazardSpec:
    return HazardSpec(
        name="test/pitch", kind="pitch", obs_index=0, low=low, high=high,
        probability=p, cost=cost, terminate_factor=factor,
    )  # fmt: skip


ALWAYS = np.zeros(4)  # coins that fall under any p > 0


# ----------------------------------------------------------------------------- the rule


def test_velocity_absolute_vs_signed():
    v = np.array([-6.0, -4.0, 4.0, 6.0])
    _, risky_abs, _ = hazard_outcome(velocity(absolute=True), v, ALWAYS)
    _, risky_signed, _ = hazard_outcome(velocity(absolute=False), v, ALWAYS)
    assert risky_abs.tolist() == [True, False, False, True]
    assert risky_signed.tolist() == [False, False, False, True]


def test_pitch_range_and_termination():
    theta = np.array([-0.2, -0.17, 0.0, 0.04, 0.05, 4.5])
    delta, risky, terminate = hazard_outcome(pitch(factor=100.0), theta, np.zeros(6))
    assert risky.tolist() == [True, False, False, False, True, True]  # bounds are safe
    assert delta.tolist() == [-50.0, 0.0, 0.0, 0.0, -50.0, -50.0]
    assert terminate.tolist() == [False] * 5 + [True]  # |pitch| > 100 * 0.04
    _, _, terminate = hazard_outcome(
        pitch(-0.1, 0.1, factor=2.0), np.array([0.19, -0.21]), ALWAYS[:2]
    )
    assert terminate.tolist() == [False, True]  # |pitch| > 2 * 0.1


def test_replace_forward_vs_add():
    v = np.array([3.0, 6.0])
    add, _, _ = hazard_outcome(velocity(absolute=False, cost=-70.0), v, ALWAYS[:2])
    replace, _, _ = hazard_outcome(
        velocity(absolute=False, cost=-70.0, mode="replace_forward", forward_weight=1.0),
        v,
        ALWAYS[:2],
    )
    assert add.tolist() == [0.0, -70.0]
    assert replace.tolist() == [0.0, -70.0 - 6.0]  # r' = r - 1.0 * v + cost


def test_probability_edges_and_coins():
    v = np.full(5, 9.0)
    coins = np.array([0.0, 0.04, 0.05, 0.5, 0.999])
    never, risky0, _ = hazard_outcome(velocity(p=0.0), v, coins)
    always, risky1, _ = hazard_outcome(velocity(p=1.0), v, coins)
    some, _, _ = hazard_outcome(velocity(p=0.05), v, coins)
    assert not never.any() and risky0.all()  # p = 0: never penalised, still flagged risky
    assert (always == -10.0).all() and risky1.all()
    assert some.tolist() == [-10.0, -10.0, 0.0, 0.0, 0.0]  # penalised when coin < p


@pytest.mark.parametrize(
    "changes",
    [
        {"probability": 1.5},
        {"threshold": None},
        {"kind": "pitch", "low": 0.1, "high": -0.1, "threshold": None},
        {"kind": "pitch", "low": -0.1, "high": 0.1, "mode": "replace_forward"},
        {"terminate_factor": 2.0},
        {"mode": "subtract"},
    ],
)
def test_invalid_spec_is_a_user_error(changes):
    with pytest.raises(UserError, match="hazard spec test/velocity"):
        dataclasses.replace(velocity(), **changes)


# ----------------------------------------------------------------------------- relabel


def tiny_dataset(n: int = 1000, obs_dim: int = 3) -> OfflineDataset:
    rng = np.random.default_rng(0)
    return OfflineDataset(
        observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.normal(size=(n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(0, 3, size=(n, obs_dim)).astype(np.float32),
        terminals=np.zeros(n, bool),
        timeouts=np.zeros(n, bool),
        provenance=Provenance(source="synthetic", id="tiny"),
    )


def test_relabel_matches_the_rule_with_seeded_coins():
    data = tiny_dataset()
    spec = velocity(threshold=2.0, p=0.3, cost=-5.0)
    out = relabel(data, spec, seed=11)
    coins = np.random.default_rng(11).random(len(data))
    v = data.next_observations[:, 0]
    risky = np.abs(v) > 2.0
    expected = data.rewards + np.where(risky & (coins < 0.3), -5.0, 0.0)
    np.testing.assert_allclose(out.rewards, expected, rtol=0, atol=1e-5)
    assert out.risky.dtype == bool and (out.risky == risky).all()
    assert out.provenance.hazard["name"] == "test/velocity"
    assert out.provenance.hazard["seed"] == 11 and out.provenance.hazard["probability"] == 0.3
    assert data.risky is None and data.provenance.hazard is None  # the input is untouched
    np.testing.assert_array_equal(relabel(data, spec, seed=11).rewards, out.rewards)
    with pytest.raises(UserError, match="already relabelled"):
        relabel(out, spec, seed=11)
    with pytest.raises(UserError, match="obs_index 5 is out of range"):
        relabel(data, dataclasses.replace(spec, obs_index=5), seed=0)


# ----------------------------------------------------------------------------- wrapper


def collect(env_id: str, actions_seed: int, steps: int, horizon: int):
    """A real trajectory (several episodes) from the plain env with random actions."""
    env = gym.make(env_id, max_episode_steps=horizon)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(actions_seed)
    rows = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc")}
    for _ in range(steps):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        next_obs, reward, term, trunc, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, term, trunc), strict=True):
            rows[key].append(value)
        obs = env.reset()[0] if term or trunc else next_obs
    env.close()
    return {k: np.array(v) for k, v in rows.items()}


def as_dataset(traj) -> OfflineDataset:
    return OfflineDataset(
        observations=traj["obs"].astype(np.float32),
        actions=traj["act"],
        rewards=traj["rew"].astype(np.float32),
        next_observations=traj["next"].astype(np.float32),
        terminals=traj["term"],
        timeouts=traj["trunc"],
        provenance=Provenance(source="synthetic", id="trajectory"),
    )


AGREEMENT_CASES = {
    "halfcheetah-add": ("HalfCheetah-v5", dict(kind="velocity", obs_index=8, threshold=0.3)),
    "halfcheetah-replace": (
        "HalfCheetah-v5",
        dict(kind="velocity", obs_index=8, threshold=0.1, absolute=False, mode="replace_forward"),
    ),
    "hopper-pitch": ("Hopper-v5", dict(kind="pitch", obs_index=1, low=-0.02, high=0.02)),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT_CASES))
def test_relabel_and_wrapper_agree_step_by_step(case):
    env_id, fields = AGREEMENT_CASES[case]
    spec = HazardSpec(name=f"test/{case}", probability=0.5, cost=-7.0, **fields)
    traj = collect(env_id, actions_seed=3, steps=120, horizon=40)
    assert (traj["term"] | traj["trunc"]).sum() >= 2  # the coin stream crosses resets
    relabelled = relabel(as_dataset(traj), spec, seed=5)

    env = HazardWrapper(gym.make(env_id, max_episode_steps=40), spec, seed=5)
    env.env.reset(seed=0)  # the same start as collect(), without touching the coins
    rewards, risky = [], []
    for t, action in enumerate(traj["act"]):
        next_obs, reward, term, trunc, info = env.step(action)
        np.testing.assert_allclose(next_obs, traj["next"][t], atol=1e-9)
        rewards.append(reward)
        risky.append(info["risky"])
        if term or trunc:
            env.reset()  # no seed: the coin stream continues, as in relabel
    assert risky == relabelled.risky.tolist()
    assert 0 < sum(risky) < len(risky)
    np.testing.assert_allclose(rewards, relabelled.rewards, atol=1e-4)
    assert (relabelled.rewards != traj["rew"].astype(np.float32)).any()  # some were penalised


def test_wrapper_reset_seed_restarts_coins_and_info_key_is_used():
    spec = HazardSpec(
        name="test/oraac", kind="velocity", obs_index=8, threshold=-1e9, absolute=False,
        probability=0.5, cost=-70.0, mode="replace_forward", info_key="x_velocity",
    )  # fmt: skip
    env = HazardWrapper(gym.make("HalfCheetah-v5"), spec, seed=1)

    def run() -> list[float]:
        env.reset(seed=4)
        out = []
        for _ in range(20):
            _, reward, _, _, info = env.step(np.zeros(6, np.float32))
            assert info["risky"]
            if info["hazard_penalty"] != 0.0:  # replaced: r' = ctrl reward + cost
                assert reward == pytest.approx(info["reward_ctrl"] - 70.0)
            out.append(info["hazard_penalty"])
        return out

    first, second = run(), run()
    assert first == second  # reset(seed=s) restarts the coins
    assert any(first) and not all(first)


# ----------------------------------------------------------------------------- spec sets


# environment/configs of KaiFukazawa/RAMAC @ f2c1ed6 (docs/reference-code.md, "Hazards")
RAMAC_V2 = {
    "halfcheetah-medium-replay": dict(kind="velocity", threshold=5.0, probability=0.05, cost=-60.0),
    "halfcheetah-medium-expert": dict(
        kind="velocity", threshold=10.0, probability=0.05, cost=-70.0
    ),
    "hopper-medium-replay": dict(
        low=-0.1, high=0.1, probability=0.1, cost=-50.0, terminate_factor=2.0
    ),
    "hopper-medium-expert": dict(
        low=-0.17, high=0.04, probability=0.1, cost=-50.0, terminate_factor=100.0
    ),
    "walker2d-medium-replay": dict(low=-0.5, high=0.5, probability=0.1, cost=-30.0),
    "walker2d-medium-expert": dict(low=-0.5, high=0.5, probability=0.1, cost=-30.0),
}


@pytest.mark.parametrize("dataset", sorted(RAMAC_V2))
def test_ramac_v2_values(dataset):
    spec = load_hazard("ramac-v2", f"{dataset}-v2")
    assert spec.name == f"ramac-v2/{dataset}"
    for key, value in RAMAC_V2[dataset].items():
        assert getattr(spec, key) == value, key
    assert spec.mode == "add" and spec.absolute
    assert spec.obs_index == (8 if spec.kind == "velocity" else 1)


def test_oraac_v0_values():
    cheetah = load_hazard("oraac-v0", "halfcheetah-medium-v0")
    assert (cheetah.threshold, cheetah.cost, cheetah.probability) == (4.0, -70.0, 0.05)
    assert not cheetah.absolute and cheetah.mode == "replace_forward"
    assert cheetah.info_key == "x_velocity" and cheetah.forward_weight == 1.0
    assert load_hazard("oraac-v0", "halfcheetah-expert").cost == -60.0
    hopper = load_hazard("oraac-v0", "hopper-expert")
    assert (hopper.low, hopper.high, hopper.cost) == (-0.1, 0.1, -50.0)
    assert set(load_spec_set("oraac-v0")) == {
        f"{t}-{k}" for t in ("halfcheetah", "hopper", "walker2d") for k in ("medium", "expert")
    }


def test_spec_set_errors(tmp_path):
    with pytest.raises(UserError, match="no spec for 'halfcheetah-medium'"):
        load_hazard("ramac-v2", "halfcheetah-medium-v2")
    with pytest.raises(UserError, match="unknown hazard spec set 'ramac-v9'"):
        load_hazard("ramac-v9", "hopper-medium-replay")
    assert load_hazard("ramac-v2-generated", "halfcheetah-medium-expert").threshold == 4.16
    path = tmp_path / "mine.yaml"
    path.write_text(
        "set: mine\nspecs:\n  hopper-medium:\n    kind: pitch\n    obs_index: 1\n"
        "    low: -0.1\n    high: 0.1\n    probability: 0.1\n    cost: -5\n    treshold: 3\n"
    )
    with pytest.raises(
        UserError, match=r"mine\.yaml: spec 'hopper-medium': unknown key\(s\) treshold"
    ):
        load_hazard(str(path), "hopper-medium")
    path.write_text(path.read_text().replace("    treshold: 3\n", ""))
    assert load_hazard(str(path), "hopper-medium").name == "mine/hopper-medium"
    path.write_text(path.read_text().replace("kind: pitch", "kind: velocity\n    threshold: null"))
    with pytest.raises(UserError, match="not calibrated yet"):
        load_hazard(str(path), "hopper-medium")
    path.write_text("sett: mine\nspecs: {}\n")
    with pytest.raises(UserError, match="unknown top-level key"):
        load_hazard(str(path), "hopper-medium")


# ----------------------------------------------------------------------------- env factory


def test_make_env_horizons_and_hazard():
    spec = load_hazard("ramac-v2", "hopper-medium-replay")
    env = make_env("hopper-medium-replay-v2", spec, seed=0, max_episode_steps=None)
    assert env.spec.max_episode_steps == 500 and isinstance(env, HazardWrapper)
    env.reset(seed=0)
    assert "risky" in env.step(env.action_space.sample())[4]
    assert make_env("halfcheetah", None, 0, None).spec.max_episode_steps == 200
    assert make_env("walker2d", None, 0, FULL_HORIZON).spec.max_episode_steps == 1000
    with pytest.raises(UserError, match="unknown task 'ant'"):
        make_env("ant", None, 0, None)


def test_make_vector_env():
    spec = load_hazard("ramac-v2", "halfcheetah-medium-replay")
    envs = make_vector_env("halfcheetah", spec, 2, seeds=[1, 2], max_episode_steps=10)
    envs.reset(seed=[0, 1])
    _, rewards, _, _, infos = envs.step(np.zeros((2, 6), np.float32))
    assert rewards.shape == (2,) and infos["risky"].shape == (2,)
    assert [e.coin_seed for e in envs.envs] == [1, 2]
    envs.close()
    with pytest.raises(UserError, match="need 3 seeds"):
        make_vector_env("hopper", None, 3, seeds=[0], max_episode_steps=None)
