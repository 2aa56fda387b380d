"""The prepared device check (benchmarks/gpu_check.py, issue 24), on the CPU: its helpers
against known answers, and the whole script at its --quick budget."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gpu_check = _load()


def test_draws_for_another_device_come_from_the_cpu_stream():
    """Inside the block a draw for a non-CPU device (meta stands in for CUDA here) takes the
    CPU stream's numbers: the CPU stream advances by exactly that draw."""
    originals = torch.rand, torch.randn_like
    torch.manual_seed(7)
    expected = torch.rand(4), torch.randn(3), torch.randint(0, 10, (5,))
    torch.manual_seed(7)
    with gpu_check.cpu_random_numbers():
        moved = torch.rand(4, device="meta")
        like = torch.randn_like(torch.empty(3, device="meta"))
        assert moved.device.type == "meta" and like.device.type == "meta"
        drawn_after = torch.randint(0, 10, (5,), device="cpu")
    assert torch.equal(drawn_after, expected[2])
    assert (torch.rand, torch.randn_like) == originals  # restored after the block


def test_parity_on_the_cpu_is_exact():
    check = gpu_check.parity("radac", torch.device("cpu"), updates=2)
    assert check.loss_rdiff == 0.0 and check.cvar_rdiff == 0.0 and check.ok


def rate(algo, seeds, per_second, tf32=False, compiled=False):
    r = gpu_check.Rate("ramac", algo, seeds, tf32, compiled)
    r.updates_per_s = per_second
    return r


def test_projected_hours_by_hand():
    rates = [
        rate("radac", 1, 10.0),
        rate("radac", 5, 5.0),  # stack updates/s: 25 seed-updates/s
        rate("radac", 5, 99.0, compiled=True),  # not as training runs it: ignored
        rate("radac", 5, 98.0, tf32=True),  # nor this
        rate("bc", 1, 100.0),
        rate("bc", 5, float("nan")),  # failed: no stacked rate
    ]
    flat, missing = gpu_check.projected_hours(rates, stacked=False)
    # 6 datasets x 5 seeds x 2M updates / rate / 3600
    assert flat == pytest.approx(6 * 5 * 2e6 / 10 / 3600 + 6 * 5 * 2e6 / 100 / 3600)
    assert missing == []
    stacked, missing = gpu_check.projected_hours(rates, stacked=True)
    assert stacked == pytest.approx(6 * 2e6 / 5 / 3600) and missing == ["bc"]


def test_a_rate_is_the_median_block(monkeypatch):
    clock = iter([0.0, 1.0, 5.0, 10.0, 12.0, 20.0, 24.0, 30.0, 31.0, 40.0])
    monkeypatch.setattr(gpu_check.time, "perf_counter", lambda: next(clock))
    budget = gpu_check.Budget(warmup=1, seconds=0.0, min_updates=2)
    per_second, warmup = gpu_check.measure(lambda: None, torch.device("cpu"), budget)
    # warm-up 0 -> 1 s, deadline 5; blocks of 2 updates in 2 s, 4 s and 1 s: rates 1, 0.5, 2
    assert warmup == 1.0 and per_second == 1.0


@pytest.mark.slow
def test_the_quick_check_writes_its_report_on_the_cpu(tmp_path):
    report = tmp_path / "gpu_check.md"
    command = [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--device", "cpu"]
    proc = subprocess.run(
        [*command, "--quick", "--out", str(report)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = report.read_text()
    for heading in ("## Parity", "## The bandit's smoke panel", "## Throughput", "projected"):
        assert heading in text
    assert "| radac | critic_loss | 0.00e+00 |" in text and "| RADAC | BC |" in text
    assert "| radac (public-code style) | 1 | off |" in text and "| radac | 5 | off | no |" in text
    assert "| 1 | on |" not in text  # TF32 means nothing on the CPU
    assert "CPU-hours" in text and "Not included: ravl, ravl_cvar" in text
    assert (tmp_path / "gpu_check-bandit.png").read_bytes()[:4] == b"\x89PNG"
