"""D4RL files: the table, qlearning_dataset's exact d4rl semantics, validation, download."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import h5py
import numpy as np
import pytest

import ramac.data.d4rl as d4rl
from ramac.data.d4rl import (
    D4RL_DATASETS,
    download_file,
    ensure_card,
    file_sha256,
    load_d4rl,
    qlearning_dataset,
    read_d4rl_hdf5,
    resolve_info,
)
from ramac.envs.hazards import load_hazard, relabel
from ramac.errors import UserError

# Two episodes and the start of a third, as a D4RL file lays them out:
#   rows 0-2: episode 1, cut by the time limit at row 2 (timeouts[2])
#   rows 3-5: episode 2, ends on env termination at row 5 (terminals[5])
#   row 6:    first step of an unfinished episode 3 (the file's last row)
# observations[i] = [i, 10 + i]; the stored successor of the time-out row and of the last
# row is not in `observations` ([100, 110] and [106, 116]).
OBS = np.array([[i, 10 + i] for i in range(7)], np.float32)
NEXT = np.array(
    [[1, 11], [2, 12], [100, 110], [4, 14], [5, 15], [105, 115], [106, 116]], np.float32
)
ACT = np.arange(7, dtype=np.float32).reshape(7, 1) - 3.5  # exact in float32
REW = np.arange(7, dtype=np.float32)
TERM = np.array([0, 0, 0, 0, 0, 1, 0], bool)
TIMEOUT = np.array([0, 0, 1, 0, 0, 0, 0], bool)


def write(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def tiny_file(path: Path, **changes: np.ndarray | None) -> Path:
    arrays = dict(
        observations=OBS, next_observations=NEXT, actions=ACT, rewards=REW,
        terminals=TERM, timeouts=TIMEOUT,
    )  # fmt: skip
    arrays.update(changes)
    return write(path, **{k: v for k, v in arrays.items() if v is not None})


def test_table_of_datasets():
    assert len(D4RL_DATASETS) == 30  # 3 tasks x 5 kinds x (v0, v2)
    info = D4RL_DATASETS["halfcheetah-medium-expert-v2"]
    assert info.url == (
        "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/"
        "halfcheetah_medium_expert-v2.hdf5"
    )
    assert info.env_id == "HalfCheetah-v4"  # D4RL's collection dynamics (module docstring)
    assert (info.ref_min_score, info.ref_max_score) == (-280.178953, 12135.0)
    assert D4RL_DATASETS["hopper-medium-replay-v2"].file_name == "hopper_medium_replay-v2.hdf5"
    assert D4RL_DATASETS["walker2d-random-v2"].ref_max_score == 4592.3
    # v0 (ORAAC's data): URLs and reference scores of D4RL d4rl/infos.py
    v0 = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco/"
    assert D4RL_DATASETS["hopper-medium-v0"].url == v0 + "hopper_medium.hdf5"
    assert D4RL_DATASETS["walker2d-medium-replay-v0"].url == v0 + "walker_mixed.hdf5"
    assert D4RL_DATASETS["halfcheetah-medium-replay-v0"].file_name == "halfcheetah_mixed.hdf5"
    assert D4RL_DATASETS["hopper-medium-expert-v0"].url == v0 + "hopper_medium_expert.hdf5"
    walker = D4RL_DATASETS["walker2d-expert-v0"]
    assert (walker.version, walker.env_id, walker.ref_min_score) == ("v0", "Walker2d-v4", 1.629008)
    assert resolve_info("hopper-medium").id == "hopper-medium-v2"  # no suffix: v2
    assert resolve_info("hopper-medium-v0").version == "v0"
    with pytest.raises(UserError, match="version in v0, v2"):
        resolve_info("hopper-medium-v1")


def test_qlearning_dataset_matches_d4rl(tmp_path):
    out = qlearning_dataset(read_d4rl_hdf5(tiny_file(tmp_path / "tiny.hdf5")))
    # d4rl: rows 0..5 (the last row is dropped), the time-out row 2 skipped,
    # next obs = the next row (even for the terminal row 5: episode 3's first obs)
    np.testing.assert_array_equal(out["rows"], [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(
        out["observations"], [[0, 10], [1, 11], [3, 13], [4, 14], [5, 15]]
    )
    np.testing.assert_array_equal(
        out["next_observations"], [[1, 11], [2, 12], [4, 14], [5, 15], [6, 16]]
    )
    np.testing.assert_array_equal(out["actions"], [[-3.5], [-2.5], [-0.5], [0.5], [1.5]])
    np.testing.assert_array_equal(out["rewards"], [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(out["terminals"], [False, False, False, False, True])
    np.testing.assert_array_equal(out["timeouts"], [False] * 5)
    assert out["observations"].dtype == np.float32 and out["terminals"].dtype == bool
    # ... and the terminal row keeps the file's stored post-step state beside it
    np.testing.assert_array_equal(out["end_rows"], [4])
    np.testing.assert_array_equal(out["end_observations"], [[105, 115]])
    without = qlearning_dataset(
        read_d4rl_hdf5(tiny_file(tmp_path / "n.hdf5", next_observations=None))
    )
    np.testing.assert_array_equal(without["end_rows"], [4])
    assert np.isnan(without["end_observations"]).all()  # unknown: the file stores none


def test_qlearning_dataset_keep_timeouts(tmp_path):
    out = qlearning_dataset(read_d4rl_hdf5(tiny_file(tmp_path / "tiny.hdf5")), keep_timeouts=True)
    np.testing.assert_array_equal(out["rows"], [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(
        out["next_observations"],
        [[1, 11], [2, 12], [100, 110], [4, 14], [5, 15], [6, 16], [106, 116]],
    )
    np.testing.assert_array_equal(out["terminals"], [0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(out["timeouts"], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out["end_rows"], [5])  # time-out rows use stored ones already


def test_qlearning_dataset_terminate_on_end_and_no_timeouts_key(tmp_path):
    raw = read_d4rl_hdf5(tiny_file(tmp_path / "tiny.hdf5"))
    out = qlearning_dataset(raw, terminate_on_end=True)
    np.testing.assert_array_equal(out["rows"], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(out["next_observations"][2], [3, 13])  # d4rl's next row
    np.testing.assert_array_equal(out["terminals"], [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(out["end_rows"], [2, 5])  # the time-out row ends one too
    np.testing.assert_array_equal(out["end_observations"], [[100, 110], [105, 115]])
    # without a timeouts key d4rl counts steps: the step where the counter reaches
    # max_episode_steps - 1 is skipped (rows 2 and 5 here, counting from 0 after each end)
    del raw["timeouts"]
    out = qlearning_dataset(raw, max_episode_steps=3)
    np.testing.assert_array_equal(out["rows"], [0, 1, 3, 4])


BAD_FILES = {
    "missing key": (dict(actions=None), "missing key"),
    "mismatched lengths": (dict(rewards=REW[:-1]), "'rewards' has 6 rows"),
    "NaN": (dict(observations=np.where(OBS == 3, np.nan, OBS)), "'observations' contains NaN"),
    "inf": (dict(rewards=np.where(REW == 2, np.inf, REW)), "'rewards' contains inf"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_one_line_user_errors(tmp_path, case):
    changes, message = BAD_FILES[case]
    path = tiny_file(tmp_path / "bad.hdf5", **changes)
    with pytest.raises(UserError, match=message) as err:
        read_d4rl_hdf5(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_wrong_dimensions_for_the_task(tmp_path):
    path = tiny_file(tmp_path / "hopper_medium-v2.hdf5")  # the task is read from the name
    with pytest.raises(UserError, match=r"sizes 2/1 do not match task hopper \(11/3\)") as err:
        read_d4rl_hdf5(path)
    assert str(path) in str(err.value)
    with pytest.raises(UserError, match="task walker2d"):
        read_d4rl_hdf5(tiny_file(tmp_path / "x.hdf5"), task="walker2d")


def test_not_hdf5_and_missing(tmp_path):
    path = tmp_path / "hopper_medium-v2.hdf5"
    path.write_text("not an hdf5 file")
    with pytest.raises(UserError, match="not an hdf5 file") as err:
        read_d4rl_hdf5(path)
    assert str(path) in str(err.value)
    with pytest.raises(UserError, match="no such file"):
        read_d4rl_hdf5(tmp_path / "absent.hdf5")


def cheetah_arrays(n: int = 30) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 17)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[9] = True
    return dict(
        observations=obs[:-1], next_observations=obs[1:], actions=rng.uniform(-1, 1, (n, 6)),
        rewards=rng.normal(size=n), terminals=np.zeros(n, bool), timeouts=timeouts,
    )  # fmt: skip


def test_load_d4rl_by_name_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    path = write(tmp_path / "halfcheetah_medium_expert-v2.hdf5", **cheetah_arrays())
    data = load_d4rl("halfcheetah-medium-expert-v2")
    assert len(data) == 30 - 1 - 1  # the last row and the time-out row are dropped
    prov = data.provenance
    assert (prov.source, prov.id, prov.version, prov.env_id) == (
        "d4rl",
        "halfcheetah-medium-expert-v2",
        "v2",
        "HalfCheetah-v4",
    )
    assert prov.extra["env_source"].startswith("D4RL's collection dynamics")
    assert prov.sha256 == file_sha256(path) and len(prov.sha256) == 64
    assert (prov.ref_min_score, prov.ref_max_score) == (-280.178953, 12135.0)
    assert load_d4rl(str(path)).provenance.id == "halfcheetah-medium-expert-v2"
    assert len(load_d4rl("halfcheetah-medium-expert", keep_timeouts=True)) == 30


def test_offline_download_gives_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "cache"))

    def offline(url, dest):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(d4rl, "download_file", offline)
    with pytest.raises(UserError) as err:
        load_d4rl("hopper-medium-expert-v2")
    message = str(err.value)
    assert "\n" not in message and "Name or service not known" in message
    assert "put hopper_medium_expert-v2.hdf5" in message and str(tmp_path / "cache") in message
    with pytest.raises(UserError, match="not available offline: put hopper_medium_expert-v2"):
        load_d4rl("hopper-medium-expert-v2", download=False)
    with pytest.raises(UserError, match="unknown D4RL dataset 'hopper-mediocre'"):
        load_d4rl("hopper-mediocre")


def test_download_file_writes_through_a_temporary_name(tmp_path):
    source = tiny_file(tmp_path / "source.hdf5")
    dest = tmp_path / "cache" / "copy.hdf5"
    download_file(source.as_uri(), dest)
    assert file_sha256(dest) == file_sha256(source)
    assert [p.name for p in dest.parent.iterdir()] == ["copy.hdf5"]


# ----------------------------------------------------------------------------- falls

# A hand-made Hopper file of two episodes: episode 1 (rows 0-2) ends in a fall at row 2
# (terminal; the stored post-step pitch is 0.5, outside the healthy range), episode 2
# (rows 3-4) starts from the reset pose and is cut by the time limit. obs[1] is the pitch.
PITCH = np.array([0.0, 0.02, 0.06, 0.003, 0.01], np.float32)
NEXT_PITCH = np.array([0.02, 0.06, 0.5, 0.01, 0.03], np.float32)
FALL, RESET = 2, 3


def hopper_fall_arrays() -> dict[str, np.ndarray]:
    obs = np.zeros((5, 11), np.float32)
    obs[:, 0] = 1.25
    obs[:, 1] = PITCH
    nxt = obs.copy()
    nxt[:, 1] = NEXT_PITCH
    return dict(
        observations=obs, next_observations=nxt, actions=np.zeros((5, 3), np.float32),
        rewards=np.ones(5, np.float32), terminals=np.array([0, 0, 1, 0, 0], bool),
        timeouts=np.array([0, 0, 0, 0, 1], bool),
    )  # fmt: skip


def check_fall_labels(dataset, fall: int = FALL, reset: int = RESET) -> None:
    """The fall row is risky and penalised exactly when its coin is below p; the first row
    of the next episode (the reset pose) is not risky; over many coin seeds the fall is
    penalised with the spec's probability."""
    spec = load_hazard("ramac-v2", "hopper-medium-replay")  # |pitch| > 0.1, p = 0.1, -50
    penalised = []
    for seed in range(2000):
        out = relabel(dataset, spec, seed=seed)
        assert out.risky[fall] and not out.risky[reset], seed
        coin = np.random.default_rng(seed).random(len(dataset))[fall]
        assert out.rewards[fall] == (1.0 + spec.cost if coin < spec.probability else 1.0)
        assert out.rewards[reset] == 1.0
        penalised.append(out.rewards[fall] != 1.0)
    assert np.mean(penalised) == pytest.approx(spec.probability, abs=0.02)  # sd 0.0067
    assert out.provenance.hazard["unlabelled_end_rows"] == 0


def test_a_fall_in_a_d4rl_file_is_labelled_from_the_fallen_pose(tmp_path):
    path = write(tmp_path / "hopper_medium_replay-v2.hdf5", **hopper_fall_arrays())
    data = load_d4rl(str(path))
    assert len(data) == 4  # rows 0-3: the last (time-out) row is dropped, as d4rl does
    # training data keeps d4rl's semantics: the fall's next_observations is the reset pose
    assert data.next_observations[FALL, 1] == PITCH[RESET]
    assert data.provenance.extra["unlabelled_end_rows"] == 0
    check_fall_labels(data)


def test_a_file_without_next_observations_warns_and_counts(tmp_path, capsys):
    arrays = {k: v for k, v in hopper_fall_arrays().items() if k != "next_observations"}
    path = write(tmp_path / "hopper_medium.hdf5", **arrays)  # D4RL's v0 file name
    data = load_d4rl(str(path))
    assert data.provenance.extra["unlabelled_end_rows"] == 1
    assert "cannot be labelled" in data.provenance.extra["warning"]
    out = relabel(data, load_hazard("oraac-v0", "hopper-medium"), seed=0)
    assert not out.risky[FALL] and out.rewards[FALL] == 1.0  # unknown: neither risky nor penalised
    assert out.provenance.hazard["unlabelled_end_rows"] == 1
    card = ensure_card(path, "hopper")
    assert card["unlabelled_terminal_rows"] == 1 and "\n" not in card["warning"]
    assert "falls cannot be labelled" in card["warning"] and "1 terminal rows" in card["warning"]
    assert "warning: no stored next_observations" in capsys.readouterr().out
    assert path.with_suffix(".card.json").exists()


def test_a_spec_defined_on_v0_data_refuses_v2_files_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    write(tmp_path / "hopper_medium-v2.hdf5", **hopper_fall_arrays())
    write(tmp_path / "hopper_medium.hdf5", **hopper_fall_arrays())  # d4rl's v0 cache name
    oraac = load_hazard("oraac-v0", "hopper-medium")
    assert oraac.d4rl_version == "v0"
    with pytest.raises(UserError) as err:
        relabel(load_d4rl("hopper-medium-v2"), oraac, seed=0)
    message = str(err.value)
    assert "\n" not in message
    assert "defined on D4RL v0 data, but dataset hopper-medium-v2 is D4RL v2" in message
    v0 = load_d4rl("hopper-medium-v0")
    assert (v0.provenance.id, v0.provenance.version) == ("hopper-medium-v0", "v0")
    assert v0.provenance.extra["config_key"] == "hopper-medium-v2"  # v2's hyperparameters
    assert relabel(v0, oraac, seed=0).risky[FALL]
    with pytest.raises(UserError, match="defined on D4RL v2 data, but dataset hopper-medium-v0"):
        relabel(v0, load_hazard("ramac-v2", "hopper-medium-replay"), seed=0)
    write(tmp_path / "my_hopper.hdf5", **hopper_fall_arrays())  # not a D4RL name
    with pytest.raises(UserError, match="the D4RL version of dataset my_hopper is unknown"):
        relabel(load_d4rl(str(tmp_path / "my_hopper.hdf5")), oraac, seed=0)
