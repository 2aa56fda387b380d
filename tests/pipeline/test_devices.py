"""Choosing the device (issue 24): resolved once when the plan is made, recorded with every
run, never part of its folder's hash; a GPU this machine lacks, or a device set in a
config, is one line before any work. (No test here needs a GPU: this machine has none.)"""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from pipeline.bandit import SUITE_FILE as BANDIT_FILE
from pipeline.bandit import BanditSuite, make_jobs
from pipeline.cli import main
from pipeline.executors import default_workers, plan_device
from pipeline.suite import make_plan
from ramac.envs.bandit import BanditSpec, make_dataset
from ramac.errors import UserError
from ramac.train import CHECKPOINT, TrainSettings, train

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


@pytest.mark.parametrize(
    "stage, extra",
    [
        ("bandit", []),
        ("train", []),
        ("evaluate", []),
        ("all", []),
        ("frontier", []),
        ("calibrate", []),
        ("bandit", ["--executor", "local", "--gpus-per-run", "0.5"]),
    ],
)
def test_a_gpu_this_machine_lacks_is_one_line_before_any_work(tmp_path, capsys, stage, extra):
    out = tmp_path / "out"
    argv = [stage, "--profile", "smoke", "--device", "cuda", "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device cuda: torch was built without CUDA on this machine "
                   "(use --device cpu or auto)"]  # fmt: skip
    assert not out.exists()


def test_a_device_in_a_profile_is_one_line_before_any_work(tmp_path):
    """A profile's ``overrides: {device: cuda}`` was a traceback inside a worker."""
    suite = yaml.safe_load(BANDIT_FILE.read_text())
    edited = copy.deepcopy(suite)
    edited["profiles"]["smoke"]["overrides"]["device"] = "cuda"
    path = tmp_path / "bandit.yaml"
    path.write_text(yaml.safe_dump(edited))
    with pytest.raises(UserError) as err:
        BanditSuite.read(path)
    assert str(err.value) == (
        f"{path} [profiles.smoke]: overrides: device: the device is chosen with --device "
        "(make: DEVICE=), never in a config"
    )


def test_plan_device_locally():
    assert plan_device("auto", "local", None) == ("cpu", 0.0)
    assert plan_device("CPU", "local", None) == ("cpu", 0.0)
    assert plan_device(None, "local", 0.25) == ("cpu", 0.0)  # a CPU device takes no GPU share
    for bad, match in [
        (("cuda:1", "local", None), "--device cuda:1: torch was built without CUDA"),
        (("gpu7", "local", None), "not a device"),
        (("cpu", "local", 0.0), r"--gpus-per-run must be in \(0, 1\]"),
        (("cpu", "ray", 1.5), r"--gpus-per-run must be in \(0, 1\]"),
    ]:
        with pytest.raises(UserError, match=match):
            plan_device(*bad)


def test_plan_device_on_ray():
    """On Ray the cluster's GPUs count, not this machine's: each task sees its own as cuda."""
    assert plan_device("cuda", "ray", None) == ("cuda", 1.0)
    assert plan_device("cuda", "ray", 0.25) == ("cuda", 0.25)
    assert plan_device("auto", "ray", 0.25) == ("cuda", 0.25)  # a share asked for: a GPU
    assert plan_device("auto", "ray", None) == ("cpu", 0.0)  # no share: Ray shows no GPU
    assert plan_device("cpu", "ray", 0.25) == ("cpu", 0.25)  # a scheduling request only
    with pytest.raises(UserError, match="on Ray each run sees only its own GPU"):
        plan_device("cuda:1", "ray", 0.5)


def test_local_workers_are_one_per_gpu_share():
    assert default_workers(0.25) == 4
    assert default_workers(1.0) == 1
    assert default_workers(0.3) == 3
    assert default_workers(0.0) == default_workers()


def test_run_folder_hashes_do_not_change(tmp_path):
    """Folders keyed before the configs dropped ``device`` keep their names (the bandit and
    suite smoke profiles' RADAC, as written before issue 24), whatever the device."""
    suite = BanditSuite.read(BANDIT_FILE)
    jobs = make_jobs(suite, "smoke", None, tmp_path, ["radac"], device="cuda", compile=True)
    assert jobs[0].run_dir.name == "seed0-2fbde576"
    assert jobs[0].settings.device == "cuda" and jobs[0].settings.compile
    plan = make_plan("smoke", out=tmp_path, algos=["radac"])
    assert {job.run_dir.name for job in plan.jobs} == {"seed0-c305cc87", "seed1-c305cc87"}


def test_a_checkpoint_records_its_device_and_a_resume_elsewhere_warns(tmp_path, capsys):
    dataset, _ = make_dataset(BanditSpec(n_samples=100), seed=0)
    tiny = {"batch_size": 16, "actor_hidden": [8], "prior_hidden": 8, "critic_hidden": 8}
    tiny |= {"embed_dim": 8, "head_hidden": 8, "n_quantiles": 4}
    settings = TrainSettings(steps=4, seed=0, checkpoint_every=2, log_every=2, progress=False)
    train("oraac", dataset, tmp_path, settings, tiny, stop_after=2)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["device"] == "cpu" and "cuda_rng" not in state  # no CUDA stream to keep
    assert capsys.readouterr().err == ""
    state["device"] = "cuda:0"  # as if written on a GPU
    torch.save(state, tmp_path / CHECKPOINT)
    train("oraac", dataset, tmp_path, settings, tiny)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"warning: {tmp_path}: its checkpoint was written on cuda:0, training goes on on cpu: "
        "its numbers are no longer bit-identical to an uninterrupted run's"
    ]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 4
