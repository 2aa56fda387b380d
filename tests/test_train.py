"""The training loop: a killed run resumes to exactly the numbers of an uninterrupted one."""

import pandas as pd
import pytest
import torch

from ramac.envs.bandit import BanditSpec, make_dataset
from ramac.train import CHECKPOINT, TRAIN_LOG, TrainSettings, load_trained, train, train_seeds

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
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["step"] == 8
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


def radac_tiny() -> dict:
    return TINY | {"actor_hidden": 8, "n_steps": 2}


def stack_settings(seeds: tuple[int, ...]) -> list[TrainSettings]:
    return [
        TrainSettings(steps=12, seed=s, checkpoint_every=4, log_every=2, progress=False)
        for s in seeds
    ]


def test_seed_stack_writes_each_run_as_a_separate_run_would(tmp_path):
    """Per-seed checkpoint, log and data order; the sampler state equals a lone run's."""
    dataset, _ = make_dataset(BanditSpec(n_samples=200), seed=0)
    settings = stack_settings((0, 1))
    dirs = [tmp_path / f"stack{s}" for s in (0, 1)]
    train_seeds("radac", dataset, dirs, settings, radac_tiny())
    train("radac", dataset, tmp_path / "alone1", settings[1], radac_tiny())
    stacked = torch.load(dirs[1] / CHECKPOINT, weights_only=True)
    alone = torch.load(tmp_path / "alone1" / CHECKPOINT, weights_only=True)
    assert stacked["step"] == alone["step"] == 12
    assert stacked["sampler"] == alone["sampler"]  # the same batches, in the same order
    for run_dir in dirs:
        log = pd.read_csv(run_dir / TRAIN_LOG)
        assert list(log["step"]) == [2, 4, 6, 8, 10, 12]
        agent, step = load_trained("radac", dataset, run_dir, radac_tiny())
        assert step == 12 and agent.step == 12
    logs = [pd.read_csv(d / TRAIN_LOG) for d in dirs]
    assert not logs[0]["critic_loss"].equals(logs[1]["critic_loss"])


def test_killed_seed_stack_resumes_to_the_same_numbers(tmp_path):
    dataset, _ = make_dataset(BanditSpec(n_samples=200), seed=0)
    settings = stack_settings((2, 3))
    straight = [tmp_path / f"straight{s}" for s in (2, 3)]
    resumed = [tmp_path / f"resumed{s}" for s in (2, 3)]
    train_seeds("radac", dataset, straight, settings, radac_tiny())
    train_seeds("radac", dataset, resumed, settings, radac_tiny(), stop_after=8)
    assert torch.load(resumed[0] / CHECKPOINT, weights_only=True)["step"] == 8
    train_seeds("radac", dataset, resumed, settings, radac_tiny())
    for a, b in zip(straight, resumed, strict=True):
        log_a = pd.read_csv(a / TRAIN_LOG).drop(columns="wall_seconds")
        log_b = pd.read_csv(b / TRAIN_LOG).drop(columns="wall_seconds")
        pd.testing.assert_frame_equal(log_a, log_b)
        state_a = torch.load(a / CHECKPOINT, weights_only=True)["agent"]["nets"]["actor"]
        state_b = torch.load(b / CHECKPOINT, weights_only=True)["agent"]["nets"]["actor"]
        for key in state_a:
            assert torch.equal(state_a[key], state_b[key]), key


def test_seed_stack_with_runs_at_different_steps_trains_them_one_by_one(tmp_path):
    dataset, _ = make_dataset(BanditSpec(n_samples=100), seed=0)
    settings = [
        TrainSettings(steps=8, seed=s, checkpoint_every=4, log_every=4, progress=False)
        for s in (0, 1)
    ]
    dirs = [tmp_path / "a", tmp_path / "b"]
    train("radac", dataset, dirs[0], settings[0], radac_tiny(), stop_after=4)
    train_seeds("radac", dataset, dirs, settings, radac_tiny())
    for run_dir in dirs:
        assert torch.load(run_dir / CHECKPOINT, weights_only=True)["step"] == 8
    with pytest.raises(ValueError, match="only in their seed"):
        train_seeds("radac", dataset, dirs, [settings[0], TrainSettings(steps=9, seed=1)])


def test_a_stack_checkpoint_cut_short_by_a_kill_is_finished_or_undone(tmp_path):
    """Pending checkpoints: all seeds have the new step -> renamed; not all -> dropped."""
    from ramac.train import PENDING, _settle_pending

    def state(step):
        return {"step": step, "log": [{"step": step, "wall_seconds": 0.0}]}

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        torch.save(state(4), d / CHECKPOINT)
    torch.save(state(8), a / PENDING)  # killed before b's pending was written
    _settle_pending([a, b])
    assert not (a / PENDING).exists()
    assert [torch.load(d / CHECKPOINT, weights_only=True)["step"] for d in (a, b)] == [4, 4]

    torch.save(state(8), a / CHECKPOINT)  # a renamed, killed before b's rename
    torch.save(state(8), b / PENDING)
    _settle_pending([a, b])
    assert not (b / PENDING).exists()
    assert [torch.load(d / CHECKPOINT, weights_only=True)["step"] for d in (a, b)] == [8, 8]
    assert list(pd.read_csv(b / TRAIN_LOG)["step"]) == [8]


def test_training_reports_its_progress_when_someone_listens(tmp_path):
    """Start, at most one message a second, and the last step; a resumed run starts at its
    checkpoint; a finished one says nothing."""
    from ramac import progress

    dataset, _ = make_dataset(BanditSpec(n_samples=100), seed=0)
    settings = TrainSettings(steps=8, seed=0, checkpoint_every=4, log_every=4, progress=False)
    overrides = {"batch_size": 8, "actor_hidden": 8, "n_steps": 2}
    sent = []
    with progress.reporting(sent.append), progress.job("bc/seed0"):
        train("bc", dataset, tmp_path, settings, overrides, stop_after=4)
        assert (sent[0].step, sent[-1].step) == (0, 4)
        sent.clear()
        train("bc", dataset, tmp_path, settings, overrides)  # resumes at 4
        assert (sent[0].step, sent[-1].step) == (4, 8)
        assert {(m.job, m.task, m.unit, m.total) for m in sent} == {
            ("bc/seed0", "bc seed 0", "update", 8)
        }
        sent.clear()
        train("bc", dataset, tmp_path, settings, overrides)  # finished: nothing to report
    assert sent == []


def test_a_cut_off_train_log_is_rewritten_from_the_checkpoints_copy(tmp_path, capsys):
    from ramac.train import heal_log

    dataset, _ = make_dataset(BanditSpec(n_samples=100), seed=0)
    settings = TrainSettings(steps=8, seed=0, checkpoint_every=4, log_every=2, progress=False)
    run = tmp_path / "run"
    train("bc", dataset, run, settings, {"batch_size": 16})
    whole = (run / TRAIN_LOG).read_bytes()
    assert not heal_log(run)  # a whole log is left as it is
    cut = whole[: len(whole) - 7]  # mid-line
    (run / TRAIN_LOG).write_bytes(cut)
    train("bc", dataset, run, settings, {"batch_size": 16})  # finished: resumes at the end
    assert (run / TRAIN_LOG).read_bytes() == whole
    assert (run / "corrupt" / TRAIN_LOG).read_bytes() == cut  # kept, not deleted
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train_log.csv: unreadable" in err[0] and "cut off" in err[0]
    # Without a train() call (evaluate, gather): read from checkpoint.pt; a missing log too.
    (run / TRAIN_LOG).write_bytes(b"")
    assert heal_log(run) and (run / TRAIN_LOG).read_bytes() == whole
    (run / TRAIN_LOG).unlink()
    assert heal_log(run) and (run / TRAIN_LOG).read_bytes() == whole
    # No readable checkpoint: nothing to heal from, the file is left for the caller to report.
    (run / CHECKPOINT).write_bytes(b"")
    (run / TRAIN_LOG).write_bytes(cut)
    assert not heal_log(run) and (run / TRAIN_LOG).read_bytes() == cut


def test_a_killed_ravl_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    """RAVL's model buffer and rollout generator are checkpointed: killed between two model
    rollouts, it resumes to an uninterrupted run's numbers; its snapshots (kept for
    evaluation) leave the buffer out."""
    from ramac.agents.base import RESUME_ONLY
    from ramac.envs.hazards import HazardSpec, relabel
    from ramac.train import SNAPSHOT_DIR

    monkeypatch.setenv("RAMAC_DATA_DIR", str(tmp_path / "data"))  # the model cache
    from tests.agents.tiny_data import RAVL_TINY, tiny_dataset

    spec = HazardSpec(name="t/v", kind="velocity", obs_index=1, probability=0.5, cost=-4.0,
                      threshold=1.0)  # fmt: skip
    dataset = relabel(tiny_dataset(200), spec, seed=0)
    overrides = RAVL_TINY | dict(
        rollout_every=3, model_members=2, model_elites=1, model_hidden=8, model_layers=1,
        model_max_epochs=2, model_min_epochs=0,
    )  # fmt: skip
    settings = TrainSettings(steps=10, seed=1, checkpoint_every=4, log_every=2, progress=False)
    train("ravl", dataset, tmp_path / "straight", settings, overrides)
    train("ravl", dataset, tmp_path / "resumed", settings, overrides, stop_after=4)
    train("ravl", dataset, tmp_path / "resumed", settings, overrides)
    log_a = pd.read_csv(tmp_path / "straight" / TRAIN_LOG).drop(columns="wall_seconds")
    log_b = pd.read_csv(tmp_path / "resumed" / TRAIN_LOG).drop(columns="wall_seconds")
    assert "model_hazard_rate" in log_a and list(log_a["step"]) == [2, 4, 6, 8, 10]
    pd.testing.assert_frame_equal(log_a, log_b)
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)["agent"]
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["agent"]
    for key, value in a["nets"]["critic"].items():
        torch.testing.assert_close(value, b["nets"]["critic"][key], rtol=0, atol=0)
    assert a[RESUME_ONLY]["model_buffer"]["size"] == b[RESUME_ONLY]["model_buffer"]["size"] > 0

    snapshots = TrainSettings(**{**settings.__dict__, "keep_snapshots": True})
    train("ravl", dataset, tmp_path / "kept", snapshots, overrides)
    snapshot = torch.load(next((tmp_path / "kept" / SNAPSHOT_DIR).glob("*.pt")), weights_only=True)
    assert RESUME_ONLY not in snapshot and "nets" in snapshot
