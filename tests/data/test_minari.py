"""Minari source: episode flattening (pure), the missing-extra message, and a real round-trip."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ramac.data.minari_source import (
    EXTRA_HINT,
    flatten_episodes,
    load_minari,
    reference_scores,
)
from ramac.errors import UserError


def episode(start: float, steps: int, terminated: bool) -> dict[str, np.ndarray]:
    obs = np.arange(steps + 1, dtype=np.float64)[:, None] + start  # T+1 rows incl. the final obs
    end = np.zeros(steps, bool)
    end[-1] = True
    return {
        "observations": np.hstack([obs, -obs]),
        "actions": np.full((steps, 1), start),
        "rewards": np.arange(steps, dtype=np.float64),
        "terminations": end if terminated else np.zeros(steps, bool),
        "truncations": np.zeros(steps, bool) if terminated else end,
    }


def test_flatten_episodes_uses_true_next_observations():
    out = flatten_episodes([episode(0.0, 3, terminated=False), episode(10.0, 2, terminated=True)])
    np.testing.assert_array_equal(out["observations"][:, 0], [0, 1, 2, 10, 11])
    # the truncated step's successor is episode 1's final obs, not episode 2's first
    np.testing.assert_array_equal(out["next_observations"][:, 0], [1, 2, 3, 11, 12])
    np.testing.assert_array_equal(out["next_observations"][:, 1], [-1, -2, -3, -11, -12])
    np.testing.assert_array_equal(out["terminals"], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(out["timeouts"], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(out["actions"][:, 0], [0, 0, 0, 10, 10])
    np.testing.assert_array_equal(out["rewards"], [0, 1, 2, 0, 1])
    assert out["observations"].dtype == np.float32 and out["terminals"].dtype == bool


def test_a_fall_in_minari_episodes_is_labelled_from_the_fallen_pose():
    """The hand-made two-episode file of tests/data/test_d4rl.py as Minari episodes (T+1
    observations each, the fallen pose the last of episode 1): the same labels."""
    from test_d4rl import FALL, RESET, check_fall_labels, hopper_fall_arrays

    from ramac.data.dataset import OfflineDataset, Provenance

    a = hopper_fall_arrays()
    ends = [(0, 3, True), (3, 5, False)]  # (first row, end row, terminated)
    episodes = [
        {
            "observations": np.vstack([a["observations"][i:j], a["next_observations"][j - 1 : j]]),
            "actions": a["actions"][i:j],
            "rewards": a["rewards"][i:j],
            "terminations": a["terminals"][i:j],
            "truncations": a["timeouts"][i:j],
        }
        for i, j, _ in ends
    ]
    data = OfflineDataset(
        provenance=Provenance(source="minari", id="test/hopper/fall-v0", env_id="Hopper-v5"),
        **flatten_episodes(episodes),
    )
    assert data.next_observations[FALL, 1] == a["next_observations"][FALL, 1]  # the fallen pose
    check_fall_labels(data, FALL, RESET)


def test_flatten_rejects_bad_episodes():
    bad = episode(0.0, 3, terminated=True)
    bad["observations"] = bad["observations"][:-1]
    with pytest.raises(UserError, match="episode 0: 3 observations for 3 steps"):
        flatten_episodes([bad])
    with pytest.raises(UserError, match="no episodes"):
        flatten_episodes([])


def test_reference_scores_come_from_metadata_only():
    assert reference_scores({"ref_min_score": -1, "ref_max_score": 9.5}) == (-1.0, 9.5)
    assert reference_scores({"dataset_id": "mujoco/hopper/medium-v0"}) == (None, None)


def test_missing_extra_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari -> ImportError
    with pytest.raises(UserError) as err:
        load_minari("mujoco/halfcheetah/medium-v0")
    assert str(err.value) == EXTRA_HINT


@pytest.mark.filterwarnings("ignore::UserWarning")  # minari asks for author, permalink...
def test_load_minari_round_trip(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episodes = [episode(0.0, 3, terminated=False), episode(10.0, 2, terminated=True)]
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=np.hstack([e["observations"], e["observations"][:, :1]]).astype(
                np.float32
            ),
            actions=np.clip(e["actions"], -2, 2).astype(np.float32),
            rewards=list(e["rewards"]),
            terminations=list(e["terminations"]),
            truncations=list(e["truncations"]),
        )
        for i, e in enumerate(episodes)
    ]
    minari.create_dataset_from_buffers(
        "test/pendulum/tiny-v0", buffers, env="Pendulum-v1", ref_min_score=-10.0, ref_max_score=0.0
    )
    data = load_minari("test/pendulum/tiny-v0")
    np.testing.assert_array_equal(data.next_observations[:, 0], [1, 2, 3, 11, 12])
    np.testing.assert_array_equal(data.terminals, [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(data.timeouts, [0, 0, 1, 0, 0])
    prov = data.provenance
    assert (prov.source, prov.id, prov.version, prov.env_id) == (
        "minari",
        "test/pendulum/tiny-v0",
        "v0",
        "Pendulum-v1",
    )
    assert (prov.ref_min_score, prov.ref_max_score) == (-10.0, 0.0) and len(prov.sha256) == 64
    assert prov.extra["env_source"] == "minari env_spec"  # the evaluation env follows the data


def test_flatten_checks_flags_before_the_cast_and_floats_after_it():
    bad = episode(0.0, 3, terminated=True)
    bad["terminations"] = np.array([0, 2, 1])  # a cast to bool would make 2 True
    with pytest.raises(UserError, match="Minari dataset 'x': 'terminals' must be 0 or 1"):
        flatten_episodes([bad], "Minari dataset 'x'")
    big = episode(0.0, 3, terminated=True)
    big["rewards"] = np.array([0.0, 1e39, 0.0])  # finite in float64, inf in float32
    with pytest.raises(UserError, match="'rewards' holds 1e\\+39 at row 1"):
        flatten_episodes([big])
