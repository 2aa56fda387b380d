"""The dynamics ensemble: its loss by hand, elites, log-variance bounds, steps, training, cache."""

import json
import math

import numpy as np
import pytest
import torch

from ramac.data.dataset import OfflineDataset, Provenance
from ramac.models import dynamics
from ramac.models.dynamics import (
    DynamicsConfig,
    DynamicsEnsemble,
    ensure_dynamics,
    gaussian_nll,
    select_elites,
    soft_bound,
    train_dynamics,
)

TINY = DynamicsConfig(
    n_members=3,
    n_elites=2,
    hidden=32,
    n_layers=2,
    weight_decays=(1e-5, 1e-5, 1e-5),
    min_epochs=0,
    max_epochs=40,
    batch_size=64,
)


def linear_dataset(n: int = 500, task: str = "halfcheetah", seed: int = 0) -> OfflineDataset:
    """s' = A s + B a + small noise, r = s_0 - a_1: a system an MLP learns in seconds."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    a = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]], np.float32)
    b = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.5]], np.float32)
    nxt = obs @ a.T + act @ b + 0.01 * rng.normal(size=(n, 3)).astype(np.float32)
    return OfflineDataset(
        obs,
        act,
        (obs[:, 0] - act[:, 1]).astype(np.float32),
        nxt,
        np.zeros(n, bool),
        np.zeros(n, bool),
        Provenance(source="synthetic", id=f"{task}-linear"),
    )


def constant_model(task: str, means: list[list[float]], logvar: float = -20.0) -> DynamicsEnsemble:
    """Members whose prediction ignores the input: member e's mean is means[e] (standardised
    = data units, identity statistics), its log-variance ``logvar`` (bounds pushed wide)."""
    e, out = len(means), len(means[0])
    config = DynamicsConfig(n_members=e, n_elites=e, hidden=4, n_layers=1, weight_decays=(0.0, 0.0))
    model = DynamicsEnsemble(out - 1, 1, task, config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.head.bias[:, 0, :out] = torch.tensor(means)
        model.head.bias[:, 0, out:] = logvar
        model.max_logvar.fill_(100.0)
        model.min_logvar.fill_(-100.0)
    return model


def test_gaussian_nll_by_hand():
    mean = torch.tensor([[[0.0], [1.0]]])  # E=1, B=2, d=1
    logvar = torch.tensor([[[0.0], [math.log(4.0)]]])
    target = torch.tensor([[[1.0], [3.0]]])
    # rows: (1-0)^2 e^0 + 0 = 1 and (3-1)^2 / 4 + log 4 = 1 + 1.386294
    expected = (1.0 + 1.0 + math.log(4.0)) / 2
    assert gaussian_nll(mean, logvar, target).item() == pytest.approx(expected, rel=1e-6)


def test_the_models_loss_is_the_hand_nll_plus_its_regularisers():
    model = constant_model("halfcheetah", [[0.0, 1.0]], logvar=math.log(4.0))  # ds=1: [ds', r]
    x = torch.zeros(1, 2, 2)  # E=1, B=2 rows, in = ds + da = 2
    y = torch.tensor([[[1.0, 3.0], [0.0, 1.0]]])
    loss, nll = model.loss(x, y)
    # terms: (1)^2/4, (2)^2/4, 0, 0 plus log 4 each, mean over 4
    hand = (0.25 + 1.0 + 0.0 + 0.0) / 4 + math.log(4.0)
    assert nll.item() == pytest.approx(hand, rel=1e-5)
    bounds = 0.01 * (100.0 * 2 - (-100.0) * 2)  # max and min log-variance of 2 outputs
    assert loss.item() == pytest.approx(hand + bounds, rel=1e-5)  # zero weights: no L2


def test_elites_are_the_members_with_the_lowest_heldout_error():
    model = constant_model("halfcheetah", [[0.7, 0.0], [0.1, 0.0], [0.5, 0.0], [0.2, 0.0]])
    model.config = DynamicsConfig(
        n_members=4, n_elites=2, hidden=4, n_layers=1, weight_decays=(0, 0)
    )
    x, y = torch.zeros(5, 2), torch.zeros(5, 2)
    errors = model.heldout_mse(x, y)  # member e: (mean_e^2 + 0) / 2
    torch.testing.assert_close(errors, torch.tensor([0.49, 0.01, 0.25, 0.04]) / 2)
    assert select_elites(errors, 2).tolist() == [1, 3]


def test_soft_log_variance_bounds():
    lv = torch.tensor([-50.0, -3.0, 0.0, 50.0])
    hi, lo = torch.tensor(0.5, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    out = soft_bound(lv, hi, lo)
    # The upper bound is max + softplus(min - max) = max + 2.8e-5 here (PETS trick).
    assert (out <= 0.5 + 1e-4).all() and (out >= -10.0).all()
    assert out[1].item() == pytest.approx(-3.0, abs=0.05)  # inside: nearly the identity
    assert out[0].item() == pytest.approx(-10.0, abs=1e-3)  # far below: the minimum
    assert out[3].item() == pytest.approx(0.5, abs=1e-4)  # far above: the maximum
    out.sum().backward()  # the bounds learn
    assert hi.grad.item() > 0 and lo.grad.item() > 0


def test_hopper_steps_flag_falls_and_stay_within_the_observation_bounds():
    # ds = 11 (hopper), da = 1; the member predicts z -0.2, angle +0, the rest +5, reward 1.
    model = constant_model("hopper", [[-0.2, 0.0] + [5.0] * 9 + [1.0]])
    model.obs_low.fill_(-1.0)
    model.obs_high.fill_(1.5)
    obs = torch.zeros(4, 11)
    obs[:, 0] = torch.tensor([0.75, 1.2, 0.8, 1.4])  # z; next z 0.55, 1.0, 0.6, 1.2
    next_obs, reward, done = model.step(obs, torch.zeros(4, 1), torch.Generator().manual_seed(0))
    assert done.tolist() == [True, False, True, False]
    assert (next_obs >= model.obs_low).all() and (next_obs <= model.obs_high).all()
    assert torch.allclose(next_obs[:, 0], obs[:, 0] - 0.2, atol=1e-3)
    assert torch.allclose(reward, torch.ones(4), atol=1e-3)
    # The angle (obs[1]) would leave +-0.2 unclipped: the rule saw the unclipped state.
    assert model.terminal(torch.tensor([[1.2, 0.3] + [0.0] * 9])).item()


def test_mean_reward_on_request():
    model = constant_model("halfcheetah", [[0.0, 2.0]], logvar=0.0)  # reward N(2, 1)
    g = torch.Generator().manual_seed(0)
    obs, act = torch.zeros(200, 1), torch.zeros(200, 1)
    _, sampled, _ = model.step(obs, act, g, sample_reward=True)
    _, mean, _ = model.step(obs, act, g, sample_reward=False)
    assert sampled.std() > 0.5 and torch.equal(mean, torch.full((200,), 2.0))


def test_training_beats_the_no_change_baseline():
    data = linear_dataset()
    model, info = train_dynamics(data, seed=0, config=TINY)
    obs, act = torch.tensor(data.observations), torch.tensor(data.actions)
    nxt = torch.tensor(data.next_observations)
    mean, _ = model.predict(obs, act)
    model_mse = (obs + mean[model.elites, :, :3] - nxt).pow(2).mean()
    no_change = (obs - nxt).pow(2).mean()
    assert model_mse < 0.1 * no_change
    assert len(info["heldout_mse"]) == 3 and len(info["elites"]) == 2
    assert info["n_holdout"] == 100 and info["epochs"] <= TINY.max_epochs


def test_ensure_dynamics_trains_once_then_loads(tmp_path, monkeypatch):
    data = linear_dataset(n=200)
    config = DynamicsConfig(**{**TINY.__dict__, "max_epochs": 3})
    first = ensure_dynamics(data, seed=1, config=config, cache_dir=tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("retrained instead of loading the cache")

    monkeypatch.setattr(dynamics, "train_dynamics", fail)
    second = ensure_dynamics(data, seed=1, config=config, cache_dir=tmp_path)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    (saved,) = tmp_path.glob("*.pt")
    assert saved.name.startswith("halfcheetah-linear-") and "-s1-" in saved.name
    record = json.loads(saved.with_suffix(".json").read_text())
    assert record["seed"] == 1 and record["dataset"]["id"] == "halfcheetah-linear"
    assert len(record["heldout_mse"]) == 3 and len(record["elites"]) == 2
    assert record["epochs"] == 3 and record["train_seconds"] >= 0
    assert record["config"]["n_members"] == 3
    # Another seed is another model.
    monkeypatch.undo()
    ensure_dynamics(data, seed=2, config=config, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_a_dataset_without_a_known_task_is_a_user_error():
    from ramac.errors import UserError

    data = linear_dataset().replace(provenance=Provenance(source="synthetic", id="bandit"))
    with pytest.raises(UserError, match="termination rule"):
        train_dynamics(data, seed=0, config=TINY)


def test_one_step_errors_by_hand():
    # Both members predict s' - s = (1, 0) and r = 2 whatever the input; the elites' mean too.
    model = constant_model("halfcheetah", [[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    obs = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    inputs = torch.cat([obs, torch.zeros(2, 1)], dim=-1)
    targets = torch.tensor([[1.0, 1.0, 2.0], [3.0, 0.0, 0.0]])  # [s' - s, r]
    errors = dynamics.one_step_errors(model, inputs, targets)
    # s' errors: (0, -1) and (-2, 0) -> mean of squares (0 + 1 + 4 + 0) / 4; r: (0, 2) -> 2
    assert errors["heldout_state_mse"] == pytest.approx(1.25)
    assert errors["no_change_state_mse"] == pytest.approx((1 + 1 + 9 + 0) / 4)
    assert errors["heldout_reward_mse"] == pytest.approx(2.0)


def test_a_relabelled_datasets_model_records_what_it_sees_of_the_hazard(tmp_path):
    from ramac.envs.hazards import HazardSpec, relabel

    spec = HazardSpec(
        name="t/v", kind="velocity", obs_index=0, probability=0.5, cost=-4.0, threshold=0.5
    )
    data = relabel(linear_dataset(n=300), spec, seed=0)
    config = DynamicsConfig(**{**TINY.__dict__, "max_epochs": 3})
    model = ensure_dynamics(data, seed=0, config=config, cache_dir=tmp_path)
    hazard, record = model.record["hazard"], json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["hazard"] == hazard and record["n_holdout"] == 60
    assert 0 < hazard["risky_rows"] <= 60 and 0 <= hazard["model_penalty_rate"] <= 1
    assert 0.2 < hazard["data_penalty_rate"] < 0.8  # p = 0.5 on a few dozen rows
    assert record["heldout_state_mse"] < record["no_change_state_mse"] * 2
    assert dynamics.load_dynamics(next(tmp_path.glob("*.pt"))).record == model.record


def test_too_few_rows_to_hold_out_is_a_user_error():
    from ramac.errors import UserError

    with pytest.raises(UserError, match="too few rows \\(4\\)"):
        train_dynamics(linear_dataset(n=4), seed=0, config=TINY)  # int(4 x 0.2) = 0 held out
