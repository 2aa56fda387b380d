"""The training loop: a killed run resumes to exactly the numbers of an uninterrupted one."""

import pandas as pd
import pytest
import torch

from ramac.envs.bandit import BanditSpec, make_dataset
from ramac.train import CHECKPOINT, TRAIN_LOG, TrainSettings, load_trained, train

TINY = {"batch_size": 16, "critic_hidden": 8, "embed_dim": 8, "head_hidden": 8, "n_quantiles": 4}


@pytest.mark.parametrize("algo", ["radac", "oraac"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, algo):
    dataset, _ = make_dataset(BanditSpec(n_samples=200), seed=0)
    overrides = TINY | {"actor_hidden": 8 if algo == "radac" else [8], "n_steps": 2}
    if algo == "oraac":
        overrides.pop("n_steps")
        overrides["prior_hidden"] = 8
    settings = TrainSettings(steps=12, seed=3, checkpoint_every=4, log_every=2, progress=False)

    train(algo, dataset, tmp_path / "straight", settings, overrides)
    # "Kill" a run after its second checkpoint, then start it again: it resumes from step 8.
    train(algo, dataset, tmp_path / "resumed", settings, overrides, stop_after=8)
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=False)["step"] == 8
    train(algo, dataset, tmp_path / "resumed", settings, overrides)

    a, step_a = load_trained(algo, dataset, tmp_path / "straight", overrides)
    b, step_b = load_trained(algo, dataset, tmp_path / "resumed", overrides)
    assert step_a == step_b == 12
    obs = torch.zeros(32, 1)
    torch.testing.assert_close(
        a.act(obs, torch.Generator().manual_seed(0)), b.act(obs, torch.Generator().manual_seed(0))
    )
    log_a = pd.read_csv(tmp_path / "straight" / TRAIN_LOG).drop(columns="wall_seconds")
    log_b = pd.read_csv(tmp_path / "resumed" / TRAIN_LOG).drop(columns="wall_seconds")
    assert list(log_a["step"]) == [2, 4, 6, 8, 10, 12]
    pd.testing.assert_frame_equal(log_a, log_b)


def test_tensorboard_gets_the_logged_metrics_when_installed(tmp_path, monkeypatch):
    import sys
    import types

    written = []

    class FakeWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, name, value, step):
            written.append((name, step))

        def close(self):
            written.append(("closed", None))

    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter)
    )
    dataset, _ = make_dataset(BanditSpec(n_samples=100), seed=0)
    settings = TrainSettings(steps=4, seed=0, checkpoint_every=4, log_every=2, progress=False)
    train("bc", dataset, tmp_path, settings, {"batch_size": 8, "actor_hidden": 8, "n_steps": 2})
    assert ("bc_loss", 2) in written and ("bc_loss", 4) in written
    assert written[-1] == ("closed", None)
