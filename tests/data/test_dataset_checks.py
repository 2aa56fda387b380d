"""``check_dataset``: what training needs of a loaded dataset, checked in one line.

``load_d4rl`` applies it (training loads D4RL data through it), and any command can call
it, or ``load_d4rl``, to reject a file before work starts, even when a dataset card written
from an earlier, good copy of the file is still beside it.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ramac.data.d4rl import ensure_card, load_d4rl
from ramac.data.dataset import OfflineDataset, Provenance, check_arrays, check_dataset, nonfinite
from ramac.errors import UserError


def tiny(**changes) -> OfflineDataset:
    """Four hand-made transitions of a 2-D state, 1-D action task."""
    arrays = dict(
        observations=np.arange(8, dtype=np.float32).reshape(4, 2),
        actions=np.array([[-1.0], [-0.5], [0.5], [1.0]], np.float32),
        rewards=np.array([0.0, 1.0, 2.0, 3.0], np.float32),
        next_observations=np.arange(2, 10, dtype=np.float32).reshape(4, 2),
        terminals=np.array([0, 0, 0, 1], bool),
        timeouts=np.zeros(4, bool),
    )
    provenance = changes.pop("provenance", Provenance(source="synthetic", id="tiny"))
    return OfflineDataset(**(arrays | changes), provenance=provenance)


def test_a_good_dataset_passes_unchanged():
    data = tiny()
    assert check_dataset(data) is data


def test_a_nan_reward_is_one_line_naming_the_dataset_and_row():
    rewards = np.array([0.0, np.nan, 2.0, 3.0], np.float32)
    with pytest.raises(UserError) as err:
        check_dataset(tiny(rewards=rewards))
    assert str(err.value) == "dataset tiny: 'rewards' contains NaN values (first at row 1)"


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(observations=np.full((4, 2), np.inf, np.float32)), "'observations' contains inf"),
        (dict(actions=np.array([[0.0], [np.nan], [0.0], [0.0]])), "'actions' contains NaN"),
        (dict(next_observations=np.zeros((4, 3), np.float32)), "'next_observations' has shape"),
        (dict(actions=np.zeros(4, np.float32)), "'actions' must be 2-D"),
        (dict(rewards=np.zeros((4, 2), np.float32)), "'rewards' must hold one value per row"),
        (dict(terminals=np.array([0, 2, 0, 0])), "'terminals' must be 0 or 1"),
        (dict(actions=np.array([[0.0], [1.5], [0.0], [0.0]])), "'actions' reach 1.5, outside"),
    ],
)
def test_what_training_cannot_use_is_one_line(changes, message):
    with pytest.raises(UserError, match=message) as err:
        check_dataset(tiny(**changes))
    assert "\n" not in str(err.value) and str(err.value).startswith("dataset tiny: ")


def test_action_bounds_follow_the_recorded_max_action():
    actions = np.array([[0.0], [2.0], [-2.0], [0.0]], np.float32)
    wide = Provenance(source="synthetic", id="wide", extra={"max_action": 2.0})
    check_dataset(tiny(actions=actions, provenance=wide))
    # float32 rounding of a squashed action is not a bound violation
    check_dataset(tiny(actions=np.array([[1.0000001], [0.0], [0.0], [0.0]], np.float32)))


def test_an_empty_dataset_is_refused():
    empty = {k: v[:0] for k, v in vars(tiny()).items() if isinstance(v, np.ndarray)}
    with pytest.raises(UserError, match="no transitions"):
        check_dataset(tiny(**empty))


def test_nonfinite_names_the_first_bad_row():
    assert nonfinite("rewards", np.ones(3)) is None
    values = np.ones((5, 2))
    values[3, 1] = -np.inf
    assert nonfinite("x", values) == "'x' contains inf values (first at row 3)"


# ----------------------------------------------------------------------------- D4RL files


def hopper_arrays(n: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, 11)).astype(np.float32)
    return dict(
        observations=obs[:-1], next_observations=obs[1:],
        actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32), terminals=np.zeros(n, bool),
        timeouts=np.zeros(n, bool),
    )  # fmt: skip


def write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def test_load_d4rl_refuses_actions_training_cannot_take(tmp_path):
    arrays = hopper_arrays()
    arrays["actions"][5, 1] = 3.0
    path = write(tmp_path / "hopper_medium_expert-v2.hdf5", arrays)
    with pytest.raises(UserError) as err:
        load_d4rl(str(path))
    assert str(err.value) == (
        f"{path}: 'actions' reach 3, outside the action bounds +-1 "
        "(the agents act in [-max_action, max_action])"
    )


def test_a_nan_reward_file_behind_an_old_card_is_caught_by_both(tmp_path, monkeypatch):
    """The data stage's card records the file's size and sha256, so ``ensure_card`` refuses
    a file replaced since; ``load_d4rl`` (what training calls) reads the file itself."""
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    arrays = hopper_arrays()
    path = write(tmp_path / "hopper_medium_expert-v2.hdf5", arrays)
    ensure_card(path, "hopper")  # the card of the good file
    ensure_card(path, "hopper")  # checked against it: the same file passes
    arrays["rewards"][7] = np.nan
    write(path, arrays)
    with pytest.raises(UserError, match="sha256 differs from the one its card") as err:
        ensure_card(path, "hopper")
    assert str(err.value).startswith(f"{path}: ") and "delete the card" in str(err.value)
    with pytest.raises(UserError) as err:
        load_d4rl("hopper-medium-expert-v2", download=False)
    assert str(err.value) == f"{path}: 'rewards' contains NaN values (first at row 7)"


# ------------------------------------------------------------- one path for every source


@pytest.mark.parametrize(
    "change, message",
    [
        # a cast to bool first would make these True and pass
        (dict(terminals=np.array([0, 2, 0, 7, 0])), "'terminals' must be 0 or 1"),
        (dict(timeouts=np.array([0, 0.5, 0, 0, 0])), "'timeouts' must be 0 or 1"),
        # finite as float64, inf in the float32 training computes in
        (dict(rewards=np.array([0, 0, 1e39, 0, 0])), "'rewards' holds 1e\\+39 at row 2, beyond"),
        (
            dict(rewards=np.zeros((5, 2))),
            r"'rewards' must hold one value per row, got shape \(5, 2\)",
        ),
        (dict(actions=np.array([[0], [0], [5], [0], [0]])), "'actions' reach 5, outside"),
        (dict(rewards=np.array(["a", "b", "c", "d", "e"])), "'rewards' holds <U1 values"),
        (dict(actions=np.ones((5, 1), bool)), "'actions' holds bool values"),
        (dict(terminals=np.int64(0)), "'terminals' is a single value"),
    ],
)
def test_check_arrays_judges_values_as_stored(change, message):
    arrays = dict(
        observations=np.zeros((5, 2)), next_observations=np.zeros((5, 2)),
        actions=np.zeros((5, 1)), rewards=np.zeros(5), terminals=np.zeros(5, np.int64),
        timeouts=np.zeros(5, bool),
    ) | change  # fmt: skip
    with pytest.raises(UserError, match=message) as err:
        check_arrays(arrays, "f.hdf5", max_action=1.0)
    assert str(err.value).startswith("f.hdf5: ") and "\n" not in str(err.value)


def test_one_row_is_too_few_and_a_column_of_rewards_is_one_per_row():
    one = {k: v[:1] for k, v in vars(tiny()).items() if isinstance(v, np.ndarray)}
    with pytest.raises(UserError, match="only 1 row; training needs at least 2"):
        check_dataset(tiny(**one))
    column = tiny().rewards.reshape(-1, 1)
    check_arrays({**{k: getattr(tiny(), k) for k in ("observations", "actions")},
                  "rewards": column}, "x")  # fmt: skip


def test_d4rl_terminals_and_float64_overflow_are_refused_before_the_cast(tmp_path):
    arrays = hopper_arrays()
    arrays["terminals"] = np.zeros(20, np.int64)
    arrays["terminals"][[3, 9]] = [2, 7]
    path = write(tmp_path / "hopper_medium_expert-v2.hdf5", arrays)
    with pytest.raises(UserError, match=f"{path}: 'terminals' must be 0 or 1"):
        load_d4rl(str(path))
    arrays = hopper_arrays()
    arrays["rewards"] = arrays["rewards"].astype(np.float64)
    arrays["rewards"][4] = 1e39
    write(path, arrays)
    with pytest.raises(UserError, match=f"{path}: 'rewards' holds 1e\\+39 at row 4"):
        load_d4rl(str(path))


def test_d4rl_two_column_rewards_and_one_row_are_one_line(tmp_path):
    arrays = hopper_arrays()
    arrays["rewards"] = np.zeros((20, 2), np.float32)
    path = write(tmp_path / "hopper_medium_expert-v2.hdf5", arrays)
    with pytest.raises(UserError, match="'rewards' must hold one value per row"):
        load_d4rl(str(path))
    write(path, {k: v[:1] for k, v in hopper_arrays().items()})
    with pytest.raises(UserError, match="only 1 row"):
        load_d4rl(str(path))


def test_a_d4rl_card_that_is_not_json_is_moved_aside_and_written_again(tmp_path, capsys):
    path = write(tmp_path / "hopper_medium_expert-v2.hdf5", hopper_arrays())
    path.with_suffix(".card.json").write_text("{not json")
    card = ensure_card(path, "hopper")
    assert card["sha256"] and card["bytes"] == path.stat().st_size
    assert (tmp_path / "corrupt" / "hopper_medium_expert-v2.card.json").read_text() == "{not json"
    assert "moved to" in capsys.readouterr().err
