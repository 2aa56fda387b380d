"""Generated datasets: level choice, tiny rollouts into D4RL-format files, cards, loading."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from ramac.data.behaviour import save_policy
from ramac.data.cards import episode_returns
from ramac.data.d4rl import file_sha256
from ramac.data.generate import (
    Snapshot,
    calibrate_velocity_threshold,
    choose_levels,
    default_path,
    ensure_dataset,
    generate_dataset,
    list_snapshots,
    load_generated,
    main,
    plan_segments,
    read_metadata,
)
from ramac.envs.hazards import load_hazard, relabel, risk_mask
from ramac.errors import UserError

DIMS = {"halfcheetah": (17, 6), "hopper": (11, 3)}
RETURNS = {1000: 0.0, 2000: 90.0, 3000: 150.0, 4000: 300.0}  # expert 4000, medium 2000


def random_policy(rng: np.random.Generator, obs_dim: int, act_dim: int, hidden: int = 8) -> dict:
    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.5, shape).astype(np.float32)

    return {
        "w0": w(hidden, obs_dim), "b0": w(hidden), "w1": w(hidden, hidden), "b1": w(hidden),
        "mu_w": w(act_dim, hidden), "mu_b": w(act_dim),
        "log_std_w": w(act_dim, hidden) * 0.1, "log_std_b": np.full(act_dim, -1.0, np.float32),
    }  # fmt: skip


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("policies")
    rng = np.random.default_rng(0)
    for task, (obs_dim, act_dim) in DIMS.items():
        (root / task).mkdir()
        for step, ret in RETURNS.items():
            arrays = random_policy(rng, obs_dim, act_dim)
            save_policy(
                root / task / f"step{step:07d}.npz", arrays, task=task, step=step, eval_return=ret
            )
    return root


def snaps(*pairs: tuple[int, float]) -> list[Snapshot]:
    return [Snapshot(Path(f"step{s}.npz"), s, r) for s, r in pairs]


def test_levels_follow_d4rl_definitions():
    history = snaps((1, 0.0), (2, 90.0), (3, 150.0), (4, 300.0), (5, 280.0))
    medium, expert = choose_levels(history)
    assert (medium.step, expert.step) == (2, 4)  # 90 is closest to 300 / 3
    plan = plan_segments("medium-replay", history, 101)
    assert [(role, s.step, n) for role, s, n in plan] == [("replay", 1, 50), ("medium", 2, 51)]
    plan = plan_segments("medium-expert", history, 101)
    assert [(role, s.step, n) for role, s, n in plan] == [("medium", 2, 50), ("expert", 4, 51)]
    assert [s.step for _, s, _ in plan_segments("expert", history, 10)] == [4]
    with pytest.raises(UserError, match="unknown dataset kind 'random'"):
        plan_segments("random", history, 10)


def test_snapshot_errors(tmp_path, policy_dir):
    with pytest.raises(UserError, match="no behaviour-policy snapshots"):
        list_snapshots("walker2d", tmp_path)
    wrong = tmp_path / "halfcheetah"
    wrong.mkdir()
    arrays = random_policy(np.random.default_rng(1), 11, 3)
    save_policy(wrong / "step0000001.npz", arrays, task="hopper", step=1, eval_return=1.0)
    with pytest.raises(UserError, match="policy sizes 11/3, env needs 17/6"):
        generate_dataset("halfcheetah", "expert", 20, 0, tmp_path, tmp_path / "x.hdf5", card=False)


def tiny(policy_dir: Path, out: Path, task="halfcheetah", kind="medium-replay", seed=0, size=300):
    return generate_dataset(
        task, kind, size, seed, policy_dir, out, max_episode_steps=40, n_envs=3, card=False
    )


def read_all(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None
        )
    return out


def test_generated_file_has_d4rl_layout(tmp_path, policy_dir):
    path = tiny(policy_dir, tmp_path / "hc.hdf5")
    data = read_all(path)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                "infos/qpos", "infos/qvel", "metadata/json"):  # fmt: skip
        assert key in data, key
    n = len(data["rewards"])
    assert n == 300 and data["observations"].shape == (n, 17) and data["actions"].shape == (n, 6)
    assert data["observations"].dtype == np.float32 and data["rewards"].dtype == np.float32
    assert data["terminals"].dtype == bool and data["timeouts"].dtype == bool
    assert data["infos/qpos"].shape == (n, 9) and data["infos/qvel"].shape == (n, 9)
    # HalfCheetah never terminates: each segment (150 rows) runs 3 lanes with budgets of
    # whole 40-step episodes (40, 40, 80 - 10): three full episodes and one cut at 30 steps
    assert not data["terminals"].any()
    _, lengths = episode_returns(data)
    assert lengths.tolist() == [40, 40, 40, 30] * 2
    assert data["timeouts"].sum() == 8 and data["timeouts"][-1]
    within = ~data["timeouts"][:-1]
    np.testing.assert_array_equal(
        data["next_observations"][:-1][within], data["observations"][1:][within]
    )
    np.testing.assert_allclose(data["observations"][:, 0], data["infos/qpos"][:, 1], atol=1e-6)
    meta = read_metadata(path)
    assert [s["role"] for s in meta["segments"]] == ["replay", "medium"]
    assert [s["steps"] for s in meta["segments"]] == [150, 150]
    assert meta["segments"][1]["sha256"] == file_sha256(
        policy_dir / "halfcheetah" / "step0002000.npz"
    )
    assert meta["seed"] == 0 and meta["task"] == "halfcheetah" and meta["generator"]


def test_hopper_terminals_and_episode_bounds(tmp_path, policy_dir):
    data = read_all(tiny(policy_dir, tmp_path / "hop.hdf5", task="hopper", kind="expert", size=200))
    ends = data["terminals"] | data["timeouts"]
    assert data["terminals"].any()  # a random hopper falls
    assert not (data["terminals"] & data["timeouts"]).any()
    returns, lengths = episode_returns(data)
    assert lengths.sum() == 200 and (lengths <= 40).all() and len(returns) == ends.sum()


def test_generation_is_deterministic(tmp_path, policy_dir):
    a = read_all(tiny(policy_dir, tmp_path / "a.hdf5", kind="medium-expert", seed=3))
    b = read_all(tiny(policy_dir, tmp_path / "b.hdf5", kind="medium-expert", seed=3))
    c = read_all(tiny(policy_dir, tmp_path / "c.hdf5", kind="medium-expert", seed=4))
    for key in ("observations", "actions", "rewards", "terminals", "timeouts", "infos/qpos"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["actions"], c["actions"])


def test_load_generated_round_trip_and_card(tmp_path, policy_dir):
    data = load_generated(
        "halfcheetah", "medium-expert", tmp_path, size=120, seed=1, policy_dir=policy_dir,
        max_episode_steps=40,
    )  # fmt: skip
    files = list(tmp_path.glob("*.hdf5"))
    assert [f.name for f in files] == ["halfcheetah-medium-expert-gen-n120-s1.hdf5"]
    # two segments of 60 rows: a 40-step episode and one cut at 20, each ending in a
    # time-out row, which qlearning_dataset drops
    assert len(data) == 120 - 4
    prov = data.provenance
    assert (prov.source, prov.id, prov.env_id) == (
        "generated",
        "halfcheetah-medium-expert-generated",
        "HalfCheetah-v5",
    )
    assert prov.sha256 == file_sha256(files[0])
    assert set(prov.extra["policies"]) == {"step0002000.npz", "step0004000.npz"}
    card = json.loads(files[0].with_suffix(".card.json").read_text())
    assert card["rows"] == 120 and card["episodes"] == 4
    fractions = card["hazard_state_fraction"]
    assert 0.0 <= fractions["ramac-v2/halfcheetah-medium-expert"] <= 1.0
    assert 0.0 <= fractions["ramac-v2-generated/halfcheetah-medium-expert"] <= 1.0
    again = load_generated(
        "halfcheetah", "medium-expert", tmp_path, size=120, seed=1, policy_dir=policy_dir
    )  # the file exists now: read back, not regenerated
    np.testing.assert_array_equal(again.rewards, data.rewards)


def test_calibrated_threshold_follows_the_rule(tmp_path, policy_dir):
    path = tiny(policy_dir, tmp_path / "me.hdf5", kind="medium-expert", size=400)
    data = read_all(path)
    medium = np.abs(data["next_observations"][:200, 8])
    expert = np.abs(data["next_observations"][200:, 8])
    result = calibrate_velocity_threshold(path)
    expected = max(np.median(expert), np.quantile(medium, 0.95))
    assert result["threshold"] == round(float(expected), 2)
    assert result["visit_fraction_low"] <= 0.05 + 1e-9
    # Without the cap on the slower part it is the expert's median speed.
    loose = calibrate_velocity_threshold(path, low_visit=1.0)
    assert loose["threshold"] == round(float(np.median(expert)), 2)
    assert loose["visit_fraction_high"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(UserError, match="needs a medium-replay or medium-expert"):
        calibrate_velocity_threshold(tiny(policy_dir, tmp_path / "e.hdf5", kind="expert", size=40))
    hopper = tiny(policy_dir, tmp_path / "h.hdf5", task="hopper", kind="medium-expert", size=40)
    with pytest.raises(UserError, match="only velocity hazards"):
        calibrate_velocity_threshold(hopper)


def test_command_line(tmp_path, policy_dir, capsys):
    out = tmp_path / "cli.hdf5"
    args = ["--task", "halfcheetah", "--kind", "medium-expert", "--size", "60", "--out", str(out)]
    assert main([*args, "--policy-dir", str(policy_dir), "--calibrate"]) == 0
    printed = capsys.readouterr().out
    assert "dataset card: halfcheetah-medium-expert-generated" in printed
    assert '"threshold"' in printed and out.exists() and out.with_suffix(".card.json").exists()
    missing = [*args[:6], "--out", str(tmp_path / "other.hdf5")]
    assert main([*missing, "--policy-dir", str(tmp_path / "none")]) == 2
    assert "no behaviour-policy snapshots" in capsys.readouterr().err


# ----------------------------------------------------------------------------- falls


def test_a_fall_in_a_generated_file_is_labelled_from_the_fallen_pose(tmp_path):
    """The hand-made two-episode file of tests/data/test_d4rl.py, as a generated file (with
    the metadata the generator writes): the same labels through load_generated."""
    from test_d4rl import FALL, PITCH, RESET, check_fall_labels

    generated_file(tmp_path)
    data = load(tmp_path)
    assert data.next_observations[FALL, 1] == PITCH[RESET]  # d4rl's semantics for training
    assert (data.provenance.env_id, data.provenance.extra["unlabelled_end_rows"]) == (
        "Hopper-v5",
        0,
    )
    check_fall_labels(data)


def test_generated_falls_are_judged_on_the_stored_post_step_state(tmp_path, policy_dir):
    """Real rollouts: every terminal row is labelled by the state the fall led to (stored in
    the file), which the next episode's reset pose (d4rl's next_observations) never is."""
    path = tiny(policy_dir, tmp_path / "hop.hdf5", task="hopper", kind="expert", size=400)
    raw = read_all(path)
    spec = load_hazard("ramac-v2", "hopper-medium-replay")  # |pitch| > 0.1
    path.rename(tmp_path / default_path("hopper", "expert", 400, 0).name)
    data = load_generated("hopper", "expert", tmp_path, size=400, seed=0, policy_dir=policy_dir)
    out = relabel(data, spec, seed=0)
    terminal_rows = np.flatnonzero(raw["terminals"][:-1] & ~raw["timeouts"][:-1])
    kept = np.searchsorted(np.flatnonzero(~raw["timeouts"][:-1]), terminal_rows)
    assert len(kept) >= 3
    expected = risk_mask(spec, raw["next_observations"][terminal_rows, 1])
    np.testing.assert_array_equal(out.risky[kept], expected)
    assert expected.any() and not risk_mask(spec, data.next_observations[kept, 1]).any()


# ----------------------------------------------------------- checked as every source


def generated_file(tmp_path: Path, meta_text: str | None = None, **changes) -> Path:
    """A hand-made generated file of hopper-medium-replay (size 5, seed 0) under its default
    name in ``tmp_path``: the two-episode hopper fall of tests/data/test_d4rl.py, with
    ``changes`` to its arrays and ``meta_text`` for its metadata."""
    from test_d4rl import hopper_fall_arrays

    path = tmp_path / default_path("hopper", "medium-replay", 5, 0).name
    meta = {
        "generator": "gen-1", "task": "hopper", "kind": "medium-replay", "env_id": "Hopper-v5",
        "seed": 0, "size": 5,
        "segments": [{"role": "medium", "file": "p.npz", "sha256": "0", "step": 1, "steps": 5}],
    }  # fmt: skip
    with h5py.File(path, "w") as f:
        for key, value in (hopper_fall_arrays() | changes).items():
            f.create_dataset(key, data=value)
        f.create_dataset("metadata/json", data=meta_text or json.dumps(meta))
    return path


def load(tmp_path: Path):
    return load_generated("hopper", "medium-replay", tmp_path, size=5, seed=0)


@pytest.mark.parametrize(
    "changes, message",
    [
        (lambda a: {k: v[:1] for k, v in a.items()}, "only 1 row"),
        (lambda a: {"actions": np.where(a["actions"] == a["actions"], 3, 0)}, "'actions' reach 3"),
        (lambda a: {"rewards": np.where(np.arange(5) == 2, 1e39, 0.0)}, "holds 1e\\+39 at row 2"),
    ],
)
def test_a_generated_file_goes_through_every_sources_checks(tmp_path, changes, message):
    from test_d4rl import hopper_fall_arrays

    path = generated_file(tmp_path, **changes(hopper_fall_arrays()))
    with pytest.raises(UserError, match=message) as err:
        load(tmp_path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_generated_metadata_that_is_not_json_or_another_dataset_is_one_line(tmp_path):
    path = generated_file(tmp_path, meta_text="{not json")
    with pytest.raises(UserError, match=f"{path}: metadata/json is not JSON"):
        load(tmp_path)
    generated_file(tmp_path, meta_text=json.dumps({"task": "hopper"}))
    with pytest.raises(UserError, match="metadata/json lacks generator, kind"):
        load(tmp_path)
    other = {"generator": "gen-1", "task": "hopper", "env_id": "x", "kind": "medium-expert",
             "seed": 0, "size": 5, "segments": []}  # fmt: skip
    generated_file(tmp_path, meta_text=json.dumps(other))
    with pytest.raises(
        UserError, match="says task=hopper kind=medium-expert .* asks for .*kind=medium-replay"
    ):
        load(tmp_path)


def test_data_checks_an_existing_file_against_its_card(tmp_path, policy_dir, capsys):
    path = tmp_path / "hc.hdf5"
    args = ("halfcheetah", "medium-expert", 60, 0, policy_dir, path)
    ensure_dataset(*args, n_envs=2)
    good = path.read_bytes()
    capsys.readouterr()
    ensure_dataset(*args, n_envs=2)
    printed = capsys.readouterr().out
    assert f"{path}: checked ({len(good)} bytes and sha256 match its card" in printed
    # cut short (a full disk, a copy cut off): moved aside, generated again, byte for byte
    path.write_bytes(good[: len(good) // 2])
    ensure_dataset(*args, n_envs=2)
    err = capsys.readouterr().err
    assert f"records {len(good)}" in err and "moved to" in err and "generated again" in err
    assert path.read_bytes() == good
    assert (tmp_path / "corrupt" / "hc.hdf5").read_bytes() == good[: len(good) // 2]
    # the same size, other bytes (another dataset under its name): the hash tells
    flipped = bytearray(good)
    flipped[-100] ^= 1
    path.write_bytes(bytes(flipped))
    ensure_dataset(*args, n_envs=2)
    assert "sha256 differs" in capsys.readouterr().err and path.read_bytes() == good
