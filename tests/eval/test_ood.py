"""The 1-NN OOD detectors: leave-one-out reference scales, kappa thresholds, the joint and
the state-conditioned feature spaces. The nearest-neighbour engine they search with is
tested in test_knn.py."""

import json
import math

import numpy as np
import pytest

from eval.ood import (
    OODDetector,
    StateConditionedDetector,
    fit_detector,
    nearest_neighbour_distance,
)
from ramac.errors import UserError


def grid(spacing=(1.0, 1.0), size=5):
    """size x size grid with the given spacing per axis."""
    a, b = np.meshgrid(np.arange(size) * spacing[0], np.arange(size) * spacing[1])
    return np.stack([a.ravel(), b.ravel()], axis=1)


def test_detector_reference_scale_in_standardised_units():
    # Coordinates 0..4 have std sqrt(2): the unit spacing is 1/sqrt(2) standardised units.
    # The y axis is stretched x10; standardisation makes it the same grid.
    det = OODDetector().fit(grid(spacing=(1.0, 10.0)))
    assert det.ref_distance == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    state = det.state()
    np.testing.assert_allclose(state["mean"], [2.0, 20.0])
    np.testing.assert_allclose(state["std"], [math.sqrt(2), 10 * math.sqrt(2)])
    assert state["n"] == 25 and state["loo_points"] == 25 and state["dim"] == 2


def test_is_ood_at_the_right_kappa():
    det = OODDetector().fit(grid(spacing=(1.0, 10.0)))
    # In grid units (= multiples of the reference scale): 0.5, 3.5, 6 and 0 spacings away.
    queries = np.array([[2.0, 25.0], [2.0, 75.0], [10.0, 40.0], [1.0, 10.0]])
    np.testing.assert_allclose(det.distances(queries) / det.ref_distance, [0.5, 3.5, 6, 0])
    assert det.is_ood(queries, kappa=1).tolist() == [False, True, True, False]
    assert det.is_ood(queries, kappa=3).tolist() == [False, True, True, False]
    assert det.is_ood(queries, kappa=5).tolist() == [False, False, True, False]
    assert det.is_ood(queries, kappa=10).tolist() == [False, False, False, False]
    assert det.ood_rate(queries, kappa=3) == 0.5
    assert det.sweep(queries, (1, 3, 5, 10)) == {1.0: 0.5, 3.0: 0.5, 5.0: 0.25, 10.0: 0.0}


def test_loo_subsample_is_seeded():
    x = np.random.default_rng(5).normal(size=(400, 3))
    full = OODDetector().fit(x, loo_sample=None).ref_distance
    a = OODDetector().fit(x, loo_sample=100, seed=7)
    b = OODDetector().fit(x, loo_sample=100, seed=7)
    c = OODDetector().fit(x, loo_sample=100, seed=8)
    assert a.ref_distance == b.ref_distance != c.ref_distance
    assert a.state()["loo_points"] == 100 and a.state()["loo_sample"] == 100
    assert a.ref_distance == pytest.approx(full, rel=0.15)
    assert OODDetector().fit(x, loo_sample=10_000).ref_distance == pytest.approx(full, rel=1e-12)


def test_constant_feature_is_floored_not_divided_by_zero():
    x = np.c_[np.arange(10.0), np.zeros(10)]
    det = OODDetector(std_floor=1e-6).fit(x)
    assert det.state()["std"][1] == 1e-6
    assert det.is_ood(np.array([[4.0, 1.0]]), kappa=3).tolist() == [True]


def test_errors():
    with pytest.raises(UserError):
        OODDetector().fit(np.zeros((1, 2)))
    with pytest.raises(UserError):
        OODDetector().fit(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(UserError, match="duplicate"):
        OODDetector().fit(np.zeros((5, 2)))
    det = OODDetector()
    with pytest.raises(RuntimeError):
        det.distances(np.zeros((1, 2)))
    det.fit(grid())
    with pytest.raises(ValueError):
        det.distances(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        det.is_ood(np.zeros((1, 2)), kappa=0)
    with pytest.raises(ValueError):
        nearest_neighbour_distance(grid(), grid()[:3], exclude_self=True)
    with pytest.raises(ValueError):
        nearest_neighbour_distance(np.zeros(5), np.zeros(5))
    assert math.isnan(det.ood_rate(np.zeros((0, 2))))


def test_state_is_json_ready():
    import json

    state = OODDetector().fit(grid()).state()
    assert json.loads(json.dumps(state)) == state
    assert {"mean", "std", "ref_distance", "n", "loo_sample"} <= set(state)


def test_rate_columns_equal_separate_rate_and_sweep():
    rng = np.random.default_rng(1)
    detector = OODDetector().fit(rng.normal(size=(500, 3)))
    queries = rng.normal(size=(200, 3)) * 2.0
    columns = detector.rate_columns(queries, 3.0, [1, 5])
    assert columns == {
        "ood_rate": detector.ood_rate(queries, 3.0),
        "ood_rate_k1": detector.sweep(queries, [1])[1.0],
        "ood_rate_k5": detector.sweep(queries, [5])[5.0],
    }
    assert 0.0 < columns["ood_rate_k1"] and columns["ood_rate_k5"] <= columns["ood_rate"]


# --------------------------------------------------------------------------- the
# state-conditioned detector


def line_data():
    """Three states on a line (0, 1, 3; 1-D) with actions 0, 0.5 and 2 (1-D). No ties:
    state 0's nearest other state is 1, state 1's is 0 (1 < 2), state 3's is 1 (2 < 3)."""
    return np.array([[0.0], [1.0], [3.0]]), np.array([[0.0], [0.5], [2.0]])


def test_state_conditioned_on_hand_made_points():
    states, actions = line_data()
    det = StateConditionedDetector(neighbours=1, action_scale="raw").fit(states, actions)
    # left out one at a time, k = 1: |0 - 0.5|, |0.5 - 0|, |2 - 0.5| -> mean 2.5 / 3
    assert det.ref_distance == pytest.approx(5 / 6, rel=1e-12)
    # a state near the second one (1.1: nearest state 1) -> compared with action 0.5
    queries = np.array([[1.1, 0.5], [1.1, 1.5], [1.1, -0.5], [2.9, 2.0], [2.9, 0.5]])
    np.testing.assert_allclose(det.distances(queries), [0.0, 1.0, 1.0, 0.0, 1.5], atol=1e-12)
    # thresholds by hand: kappa = 1 -> 5/6 (1.0 flagged), kappa = 1.5 -> 1.25 (1.0 is not)
    assert det.is_ood(queries, kappa=1).tolist() == [False, True, True, False, True]
    assert det.is_ood(queries, kappa=1.5).tolist() == [False, False, False, False, True]
    assert det.is_ood(queries, kappa=3).tolist() == [False] * 5  # 3 x 5/6 = 2.5
    assert det.rate_columns(queries, 1.0, [1.5, 3]) == {
        "ood_rate": 0.6,
        "ood_rate_k1.5": 0.2,
        "ood_rate_k3": 0.0,
    }


def test_state_conditioned_with_more_neighbours_and_action_std():
    states, actions = line_data()
    det = StateConditionedDetector(neighbours=2, action_scale="raw").fit(states, actions)
    # k = 2, left out: state 0 sees actions {0.5, 2} -> 0.5; state 1 {0, 2} -> 0.5;
    # state 3 {0.5, 0} -> 1.5; mean 5/6 again. Query state 1.1 sees states 1 and 0.
    assert det.ref_distance == pytest.approx(5 / 6, rel=1e-12)
    np.testing.assert_allclose(det.distances(np.array([[1.1, -0.3], [1.1, 0.3]])), [0.3, 0.2])
    # action_scale="std": every action distance divided by the data's action std
    std = actions.std()
    scaled = StateConditionedDetector(neighbours=2).fit(states, actions)
    assert scaled.ref_distance == pytest.approx(5 / 6 / std, rel=1e-12)
    np.testing.assert_allclose(scaled.distances(np.array([[1.1, -0.3]])), [0.3 / std])
    # states are standardised: stretching them changes no neighbour and no distance
    stretched = StateConditionedDetector(neighbours=2).fit(states * 100 + 7, actions)
    assert stretched.ref_distance == pytest.approx(scaled.ref_distance, rel=1e-12)


def deterministic_policy_data(rng, n):
    """(states [n, 17], actions [n, 6]): states made of 12 smooth functions of a 2-D latent
    plus 5 pure-noise features; actions a deterministic function of the latent."""
    latent = rng.uniform(0, 2 * np.pi, size=(n, 2))
    freqs = np.random.default_rng(0).integers(1, 3, size=(12, 2))
    phase = np.random.default_rng(1).uniform(0, 2 * np.pi, 12)
    states = np.hstack([np.sin(latent @ freqs.T + phase), rng.normal(size=(n, 5))])
    weights = np.random.default_rng(2).normal(size=(4, 6))
    actions = np.tanh(np.hstack([np.sin(latent), np.cos(latent)]) @ weights)
    return states, actions


def test_random_actions_are_seen_by_the_state_conditioned_detector_only():
    # Issue 11 in miniature: the joint detector's 17 standardised state features swamp the
    # 6 action ones, so random actions at dataset states pass; conditioning on the state
    # flags them.
    rng = np.random.default_rng(21)
    states, actions = deterministic_policy_data(rng, 3500)
    fit_states, fit_actions = states[:3000], actions[:3000]
    held_out = np.hstack([states[3000:], actions[3000:]])
    random = np.hstack([states[3000:], rng.uniform(-1, 1, size=(500, 6))])
    joint = fit_detector("joint", fit_states, fit_actions, loo_sample=None)
    conditioned = fit_detector(
        "state_conditioned", fit_states, fit_actions, neighbours=5, loo_sample=None
    )
    assert joint.name == "joint" and conditioned.name == "state_conditioned"
    assert joint.ood_rate(random) < 0.05  # the failure mode: random actions unseen
    assert conditioned.ood_rate(random) > 0.9
    # held-out pairs of the same policy stay in distribution, up to the tail of their
    # distances (2-4% over seeds here; the calibration on real data is the benchmark's)
    assert conditioned.ood_rate(held_out) <= 0.05


def test_state_conditioned_subsample_state_and_errors():
    rng = np.random.default_rng(22)
    states, actions = deterministic_policy_data(rng, 800)
    full = StateConditionedDetector(neighbours=3).fit(states, actions, loo_sample=None)
    a = StateConditionedDetector(neighbours=3).fit(states, actions, loo_sample=200, seed=4)
    b = StateConditionedDetector(neighbours=3).fit(states, actions, loo_sample=200, seed=4)
    assert a.ref_distance == b.ref_distance == pytest.approx(full.ref_distance, rel=0.2)
    state = a.state()
    assert json.loads(json.dumps(state)) == state
    assert state["neighbours"] == 3 and state["loo_points"] == 200 and state["n"] == 800
    assert state["features"] == "state_conditioned" and state["action_scale"] == "std"
    with pytest.raises(UserError, match="more than k"):
        StateConditionedDetector(neighbours=3).fit(states[:3], actions[:3])
    with pytest.raises(ValueError, match="columns"):
        a.distances(states)  # states without their actions
    with pytest.raises(ValueError):
        StateConditionedDetector(neighbours=0)
    with pytest.raises(ValueError):
        StateConditionedDetector(action_scale="unit")
    with pytest.raises(RuntimeError):
        StateConditionedDetector().distances(np.zeros((1, 23)))
    with pytest.raises(UserError, match="duplicate"):
        StateConditionedDetector(neighbours=1).fit(np.arange(4.0)[:, None], np.zeros((4, 1)))
    with pytest.raises(UserError, match="state_conditioned"):
        fit_detector("actions_only", states, actions)
    assert math.isnan(a.ood_rate(np.zeros((0, 23))))
